"""Prometheus text exposition (format 0.0.4), written by hand: a few gauges and counters
need no client library. Scraped without login (numbers only, no ids of people)."""

from collections.abc import Sequence

from gateway.store import Store
from gateway.web.alerts import Alert

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _family(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
        sample = f"{name}{{{text}}}" if text else name
        lines.append(f"{sample} {_number(value)}")
    return lines


def render(
    store: Store, capacities: dict[str, int], now_ms: int, alerts: Sequence[Alert] = ()
) -> str:
    depth = store.depth()
    devices = store.devices()
    load = store.lane_load(capacities, 60, now=now_ms)
    lines: list[str] = []
    lines += _family(
        "chot_gateway_ingest_rate",
        "gauge",
        "Events stored per second over the last minute.",
        [({}, store.ingest_rate(60, now=now_ms))],
    )
    lines += _family(
        "chot_gateway_store_depth",
        "gauge",
        "Events in the store by state.",
        [({"state": s}, n) for s, n in sorted(depth.items())],
    )
    lines += _family(
        "chot_gateway_forward_lag_seconds",
        "gauge",
        "Age of the oldest event the central store has not confirmed.",
        [({}, store.forward_lag_s(now=now_ms))],
    )
    lines += _family(
        "chot_gateway_rejects_total",
        "counter",
        "Inputs refused at ingest.",
        [({"reason": r}, n) for r, n in sorted(store.reject_counts().items())],
    )
    lines += _family(
        "chot_gateway_central_rejects_total",
        "counter",
        "Events the central store refused: kept at the gateway as rejected, never resent.",
        [({"reason": r}, n) for r, n in sorted(store.central_reject_counts().items())],
    )
    counters = store.counters()
    lines += _family(
        "chot_gateway_quarantined_total",
        "counter",
        "Verified events the store refused to commit, set aside in quarantine and acked.",
        [({}, counters.get("quarantined", 0))],
    )
    lines += _family(
        "chot_gateway_dropped_total",
        "counter",
        "QoS 0 messages (heartbeats) dropped on a full ingest queue, by topic leaf.",
        [
            ({"leaf": name.removeprefix("dropped.")}, n)
            for name, n in sorted(counters.items())
            if name.startswith("dropped.")
        ],
    )
    gaps = store.gap_totals()
    lines += _family(
        "chot_gateway_sequence_gaps",
        "gauge",
        "Open ranges of sequence numbers not received yet, over all scanners.",
        [({}, gaps["open_ranges"])],
    )
    lines += _family(
        "chot_gateway_sequence_missing",
        "gauge",
        "Sequence numbers in the open gaps.",
        [({}, gaps["missing"])],
    )
    lines += _family(
        "chot_gateway_sequence_never_arrived_total",
        "counter",
        "Sequence numbers given up after [store] gap_expiry_hours.",
        [({}, gaps["never_arrived"])],
    )
    lines += _family(
        "chot_gateway_devices_online",
        "gauge",
        "Scanners reporting online.",
        [({}, sum(1 for d in devices if d.online))],
    )
    lines += _family(
        "chot_gateway_devices_known",
        "gauge",
        "Scanners the gateway heard of.",
        [({}, len(devices))],
    )
    lines += _family(
        "chot_gateway_lane_per_minute",
        "gauge",
        "Scans per minute per lane over the last minute.",
        [({"lane": lane}, v["per_minute"]) for lane, v in load.items()],
    )
    lines += _family(
        "chot_gateway_lane_capacity_per_minute",
        "gauge",
        "Configured lane capacity, people per minute.",
        [({"lane": lane}, v["capacity"]) for lane, v in load.items()],
    )
    lines += _family(
        "chot_gateway_alert",
        "gauge",
        "1 for each active alert (gateway/web/alerts.py); device is empty for the gateway's own.",
        [({"kind": a.kind, "device": a.device or "", "level": a.level}, 1) for a in alerts],
    )
    return "\n".join(lines) + "\n"
