"""One time zone per site: every time a person reads (page, live feed, exports, CLI, cards)
is shown in it, never in the browser's or the server's own zone."""

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


@cache
def zone(name: str | None = None) -> ZoneInfo:
    """The IANA zone `name` (default Asia/Ho_Chi_Minh); ValueError for an unknown name."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name like Asia/Ho_Chi_Minh)"
        ) from None


def local(ms: int | float, tz: str | None = None) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone(tz))


def clock(ms: int | float | None, tz: str | None = None) -> str:
    """ "14:03:05" in the site's zone; "-" for no time."""
    return local(ms, tz).strftime("%H:%M:%S") if ms else "-"


def date_time(ms: int | float | None, tz: str | None = None) -> str:
    """ "2024-05-01 14:03:05" in the site's zone."""
    return local(ms, tz).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def minutes(seconds: int | float, tz: str | None = None) -> str:
    """ "2024-05-01 14:03" for a Unix time in seconds (pass validity on cards and the CLI)."""
    return local(seconds * 1000, tz).strftime("%Y-%m-%d %H:%M")


def offset_label(tz: str | None = None, at_ms: int | float | None = None) -> str:
    """ "UTC+07:00" for the zone at that moment."""
    moment = local(at_ms, tz) if at_ms else datetime.now(zone(tz))
    offset = moment.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"
