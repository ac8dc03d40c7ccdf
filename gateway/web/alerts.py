"""When a scanner or the gateway needs an operator's attention: one alert model.

The store only records facts (last status, last heartbeat, open gaps, adopted documents); the
thresholds that turn them into alerts live here. The same `Alert`s feed the status page's
banners, /api/status, `chot gateway status` (human and JSON) and /metrics
(`chot_gateway_alert{kind=...,device=...} 1`). Words for people are in texts.py.
"""

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from common.timesync import SyncState
from gateway.store import DeviceInfo, Store
from protocol import cbor, cose
from protocol.trust import REVOCATION_TYPE, TRUST_TYPE

DEFAULT_UNREACHABLE_ALERT_MIN = 10.0  # [central] unreachable_alert_min
# gateway alerts that stop correct decisions (red banner); the others are amber
FAIL_LEVEL = frozenset({"store_full", "trust_list_expired", "revocation_list_expired"})
EXPIRED_ALERT = {TRUST_TYPE: "trust_list_expired", REVOCATION_TYPE: "revocation_list_expired"}


@dataclass(frozen=True)
class Alert:
    """One thing someone must act on: `kind` is a stable English code, `device` the scanner
    it is about (None: the gateway itself)."""

    kind: str
    device: str | None = None
    level: str = "warn"  # "fail" (red) or "warn" (amber)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "device": self.device, "level": self.level}


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
    "gateway_clock_unsynced": "gateway clock not synced",
}
# the gateway's own clock (common/timesync.py): unsynchronised, its signed acks give its units
# no time (`sync` false), so a unit without NTP shows every valid pass amber
_GATEWAY_CLOCK = SyncState()


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
    if (health or {}).get("outbox_full") is True or (number(health, "unrecorded") or 0) > 0:
        alerts.append("disk_low")  # the unit's outbox could not store decisions
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


def document_expiry(raw: bytes) -> int | None:
    """`exp` of a signed document the gateway adopted (its signature was checked then)."""
    try:
        payload = cbor.loads_strict(cose.parse_sign1(bytes(raw)).payload)
    except Exception:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return exp if isinstance(exp, int) else None


def document_alerts(documents: list[dict[str, Any]], now_s: float) -> list[str]:
    """The gateway's own trust or revocation list past its expiry: every scanner that has
    nothing newer shows every pass amber."""
    out = []
    for doc in documents:
        kind = EXPIRED_ALERT.get(doc.get("typ", ""))
        exp = document_expiry(doc.get("raw") or b"") if kind else None
        if kind and exp is not None and exp < now_s and kind not in out:
            out.append(kind)
    return out


def central_unreachable(
    central_url: str | None,
    forward: dict[str, Any] | None,
    lag_s: float | None,
    now_ms: int,
    limit_min: float = DEFAULT_UNREACHABLE_ALERT_MIN,
) -> bool:
    """The centre has not taken events for more than `limit_min` minutes: forwarding has kept
    failing that long, or the oldest event waiting for it is older (the only fact a separate
    process such as `chot gateway status` has). A gateway without a centre never alerts."""
    if not central_url:
        return False
    limit_ms = limit_min * 60_000
    since = (forward or {}).get("failing_since_ms")
    if isinstance(since, int | float) and now_ms - since > limit_ms:
        return True
    return lag_s is not None and lag_s * 1000 > limit_ms


def gateway_alerts(
    store: Store,
    *,
    central_url: str | None,
    unreachable_alert_min: float,
    now_ms: int,
    forward: dict[str, Any] | None = None,
    clock_synced: bool | None = None,
) -> list[str]:
    """The gateway's own alerts from what the store knows (and the forwarder, when it runs
    in this process): disk and store, central refusals and reachability, expired lists,
    sequence gaps, quarantine, and its own clock (`clock_synced` None: asked of this machine,
    common/timesync.py, cached 10 s)."""
    alerts = store.alerts()
    if not (_GATEWAY_CLOCK.synced() if clock_synced is None else clock_synced):
        alerts.append("gateway_clock_unsynced")
    if central_unreachable(
        central_url, forward, store.forward_lag_s(now=now_ms), now_ms, unreachable_alert_min
    ):
        alerts.append("central_unreachable")
    alerts += document_alerts(store.documents(), now_ms / 1000)
    if store.gap_totals()["open_ranges"]:
        alerts.append("sequence_gaps")
    if store.quarantine_count():
        alerts.append("events_quarantined")
    return alerts


def alert_list(device_rows: list[dict[str, Any]], gateway: list[str]) -> list[Alert]:
    """Every alert as one list: the gateway's first, then each scanner's."""
    out = [Alert(kind, None, "fail" if kind in FAIL_LEVEL else "warn") for kind in gateway]
    for row in device_rows:
        level = "warn" if row.get("online") else "fail"
        out += [Alert(kind, row["device"], level) for kind in row["alerts"]]
    return out
