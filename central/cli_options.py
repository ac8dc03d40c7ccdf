"""Arguments shared by the `chot central` commands: where the store is, which config, time
ranges and subject pseudonyms, read from the command line into what the queries take."""

import argparse
import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from central import queries
from central.config import CentralConfig, load_config
from central.store import DAY_MS
from common.cli import UsageError


def store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="central config (TOML or JSON)")
    parser.add_argument("--store", help="store URL: sqlite:///path.db or postgresql://...")


def query_parser(cmds: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    """A query command: the store's arguments and a choice of --json or --csv output."""
    parser = cmds.add_parser(name, help=text)
    store_args(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--csv", action="store_true", help="print CSV")
    return parser


def range_args(parser: argparse.ArgumentParser, default_hours: int | None = None) -> None:
    what = f"default: {default_hours} h ago" if default_hours else "default: everything"
    parser.add_argument("--from", dest="t_from", help=f"start: ISO date/time or Unix s ({what})")
    parser.add_argument("--to", dest="t_to", help="end (exclusive): ISO date/time or Unix s")
    parser.set_defaults(default_hours=default_hours)


def parse_time(value: str, tz: str = queries.DEFAULT_TZ) -> int:
    """ISO date or date-time (local time unless it has an offset) or Unix seconds -> Unix ms."""
    if value.isdigit():
        return int(value) * 1000
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"bad time {value!r}: use YYYY-MM-DD[THH:MM[+07:00]] or Unix s") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return int(moment.timestamp() * 1000)


def time_range(args: argparse.Namespace, tz: str) -> tuple[int, int]:
    now = int(time.time() * 1000)
    default_from = now - args.default_hours * 3_600_000 if args.default_hours else 0
    t_from = parse_time(args.t_from, tz) if args.t_from else default_from
    t_to = parse_time(args.t_to, tz) if args.t_to else now + DAY_MS
    if t_to <= t_from:
        raise UsageError("--to must be after --from")
    return t_from, t_to


def subject(value: str) -> bytes:
    """--sub: a subject pseudonym, 16 bytes written as 32 hex digits."""
    try:
        sub = bytes.fromhex(value)
    except ValueError:
        sub = b""
    if len(sub) != 16:
        raise UsageError("--sub must be 32 hex digits (a subject pseudonym)")
    return sub


def cli_config(args: argparse.Namespace) -> CentralConfig | None:
    return load_config(args.config) if getattr(args, "config", None) else None


def store_url(args: argparse.Namespace) -> str:
    config = cli_config(args)
    url = args.store or (config.store if config else None)
    if not url:
        raise UsageError("give --store URL or --config FILE")
    return url


def timezone(args: argparse.Namespace) -> str:
    config = cli_config(args)
    return config.timezone if config else queries.DEFAULT_TZ
