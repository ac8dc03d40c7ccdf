"""When a scanner needs an operator's attention: the device alert rules and their wording.

The store only records facts (last status, last heartbeat, open gaps); the thresholds that
turn them into alerts live here, for the status page, its API and `chot gateway status`.
"""

import itertools
import threading

from gateway.store import DeviceInfo

HEARTBEAT_STALE_MS = 90_000  # scanners send one every 15 s by default (heartbeat_s)
OUTBOX_BACKLOG_ALERT = 100  # events waiting in a scanner's outbox: it cannot deliver
OUTBOX_GROWING_MIN = 5  # below this a rising outbox is normal jitter
TREND_SAMPLES = 3

ALERT_TEXT = {
    "offline": "offline",
    "heartbeat_stale": "no heartbeat",
    "sequence_gap": "missing events (sequence gap)",
    "events_quarantined": "events set aside (quarantine)",
    "outbox_backlog": "outbox backlog",
    "outbox_growing": "outbox growing",
    "clock_bounded": "clock not synced",
    "clock_unknown": "clock untrusted",
    "trust_outdated": "old trust list",
    "no_trust_list": "no trust list",
}


def number(health: dict | None, key: str) -> int | float | None:
    """A heartbeat field that must be a number, or None: a heartbeat stored before they were
    checked may hold anything, and one odd value must not take a page down."""
    value = (health or {}).get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def alert_text(alert: str) -> str:
    return ALERT_TEXT.get(alert, alert.replace("_", " "))


def device_alerts(info: DeviceInfo, now_ms: int) -> list[str]:
    """What the store's facts about one scanner say: offline, heartbeat_stale, sequence_gap,
    outbox_backlog, clock_<state> (anything but a synced clock)."""
    health = info.heartbeat
    alerts = []
    if info.status != "online":
        alerts.append("offline")
    if info.heartbeat_ms is None or now_ms - info.heartbeat_ms > HEARTBEAT_STALE_MS:
        alerts.append("heartbeat_stale")
    if info.open_gaps:
        alerts.append("sequence_gap")
    if (number(health, "outbox_depth") or 0) > OUTBOX_BACKLOG_ALERT:
        alerts.append("outbox_backlog")
    clock = (health or {}).get("clock")
    if isinstance(clock, str) and clock != "synced":
        alerts.append("clock_" + clock[:16])
    return alerts


def trust_alerts(info: DeviceInfo, gateway_trust: int | None) -> list[str]:
    """A scanner that reports no trust list, or an older one than this gateway publishes."""
    if info.heartbeat is None:
        return []
    device_trust = number(info.heartbeat, "trust_version")
    if device_trust is None:
        return ["no_trust_list"]
    if gateway_trust is not None and device_trust < gateway_trust:
        return ["trust_outdated"]
    return []


class OutboxTrend:
    """Remembers each device's last heartbeats' outbox depths: strictly rising over
    TREND_SAMPLES heartbeats means the device cannot deliver (a growing outbox)."""

    def __init__(self) -> None:
        self._samples: dict[str, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def growing(self, dev: str, heartbeat_ms: int | None, depth: int | None) -> bool:
        if heartbeat_ms is None or depth is None:
            return False
        with self._lock:
            samples = self._samples.setdefault(dev, [])
            if not samples or samples[-1][0] != heartbeat_ms:
                samples.append((heartbeat_ms, depth))
                del samples[:-TREND_SAMPLES]
            depths = [d for _, d in samples]
        return (
            len(depths) == TREND_SAMPLES
            and depths[-1] >= OUTBOX_GROWING_MIN
            and all(a < b for a, b in itertools.pairwise(depths))
        )
