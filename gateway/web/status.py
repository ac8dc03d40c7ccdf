"""What the store's numbers mean for a gate operator: device rows with alerts (the rules are
in alerts.py), per-lane counters and congestion, and one list of banners. Plain dicts, ready
for JSON and templates.

Nothing here carries personal data: the store's read API gives pseudonymous decisions only;
manual entries' doc4 is read solely by the manual entries page (pages.py).
"""

from datetime import datetime
from typing import Any

from gateway.store import DeviceInfo, Store, StoredEvent
from gateway.web.alerts import (
    OutboxTrend,
    alert_list,
    alert_text,
    device_alerts,
    number,
    trust_alerts,
)
from protocol.reasons import Reason, Verdict, verdict_for
from protocol.trust import TRUST_TYPE


def verdict_of(reason: str | None) -> str:
    try:
        return verdict_for(Reason(reason)).value
    except ValueError:
        return Verdict.FAIL.value


def trust_version(store: Store) -> int | None:
    """Version of the trust list this gateway publishes (None before the first one)."""
    versions = [d["version"] for d in store.documents() if d["typ"] == TRUST_TYPE]
    return max(versions) if versions else None


def device_row(
    info: DeviceInfo, now_ms: int, gateway_trust: int | None, trend: OutboxTrend
) -> dict:
    hb = info.heartbeat or {}
    alerts = device_alerts(info, now_ms) + trust_alerts(info, gateway_trust)
    sent = number(hb, "t")
    hb_ms = int(sent * 1000) if sent is not None else info.last_seen_ms
    depth = number(hb, "outbox_depth")
    if trend.growing(info.dev, hb_ms, depth) and "outbox_backlog" not in alerts:
        alerts.append("outbox_growing")
    return {
        "device": info.dev,
        "lane": info.lane,
        "online": info.online,
        "state": info.status or "unknown",
        "last_seen_ms": info.last_seen_ms,
        "fps": number(hb, "fps"),
        "decoder_ms": number(hb, "decoder_ms"),
        "outbox_depth": depth,
        "clock": hb.get("clock") if isinstance(hb.get("clock"), str) else None,
        "trust_version": number(hb, "trust_version"),
        "cpu_temp": number(hb, "cpu_temp"),
        "contiguous_seq": info.contiguous,
        "open_gaps": info.open_gaps,
        "missing": info.missing,
        "never_arrived": info.never_arrived,
        "alerts": alerts,
        "alert_text": [alert_text(a) for a in alerts],
    }


def devices(store: Store, now_ms: int, trend: OutboxTrend) -> list[dict]:
    """One row per scanner the gateway heard of (the store leaves the gateway itself out)."""
    gateway_trust = trust_version(store)
    return [device_row(d, now_ms, gateway_trust, trend) for d in store.devices()]


def day_start_ms(now_s: float) -> int:
    """Local midnight: the counters are "today at this checkpoint"."""
    local = datetime.fromtimestamp(now_s).astimezone()
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def lanes(store: Store, capacities: dict[str, int], now_ms: int, since_ms: int) -> list[dict]:
    """Per lane: passed / failed by reason / warned since `since_ms`, manual entries, and
    the last minute's throughput against capacity with a queue estimate."""
    counters = store.lane_counters(since_ms)
    load = store.lane_load(capacities, 60, now=now_ms)
    manual: dict[str, int] = {}
    for entry in store.manual_entries(limit=5000):
        if entry["t_ms"] >= since_ms:
            lane = entry["lane"] or "-"
            manual[lane] = manual.get(lane, 0) + 1
    rows = []
    for lane in sorted(set(counters) | set(load) | set(manual)):
        by_reason = counters.get(lane, {})
        totals = {Verdict.PASS.value: 0, Verdict.FAIL.value: 0, Verdict.WARN.value: 0}
        failed_by_reason: dict[str, int] = {}
        for reason, n in by_reason.items():
            verdict = verdict_of(reason)
            totals[verdict] += n
            if verdict == Verdict.FAIL.value:
                failed_by_reason[reason] = n
        lane_load = load.get(lane, {})
        capacity = int(lane_load.get("capacity", 0))
        per_minute = float(lane_load.get("per_minute", 0.0))
        rows.append(
            {
                "lane": lane,
                "passed": totals["pass"],
                "failed": totals["fail"],
                "warned": totals["warn"],
                "failed_by_reason": dict(sorted(failed_by_reason.items(), key=lambda kv: -kv[1])),
                "manual": manual.get(lane, 0),
                "per_minute": round(per_minute, 1),
                "capacity": capacity,
                "utilisation": round(float(lane_load.get("utilisation", 0.0)), 2),
                "queue_estimate": round(float(lane_load.get("queue_estimate", 0.0))),
                "over_capacity": bool(capacity) and per_minute > capacity,
            }
        )
    return rows


def banners(device_rows: list[dict], lane_rows: list[dict], store_alerts: list[str]) -> list[dict]:
    """The alert strip at the top of the page: congestion first, then devices, then store."""
    out = []
    for lane in lane_rows:
        if lane["over_capacity"]:
            out.append(
                {
                    "level": "fail",
                    "kind": "congestion",
                    "lane": lane["lane"],
                    "text": f"Lane {lane['lane']} over capacity: {lane['per_minute']:.0f}/min "
                    f"for {lane['capacity']}/min, about {lane['queue_estimate']} waiting. "
                    "Open another lane or send people to the next checkpoint.",
                }
            )
    for dev in device_rows:
        if dev["alerts"]:
            level = "fail" if not dev["online"] else "warn"
            text = f"Scanner {dev['device']}: " + ", ".join(dev["alert_text"])
            out.append({"level": level, "kind": "device", "device": dev["device"], "text": text})
    for alert in store_alerts:
        out.append(
            {"level": "warn", "kind": "gateway", "text": "Gateway: " + alert.replace("_", " ")}
        )
    return out


def decision_dict(d: StoredEvent) -> dict[str, Any]:
    """One feed line: what the lights showed, where and when. No pass or person data."""
    return {
        "id": d.id,
        "eid": d.eid,
        "typ": d.typ,
        "device": d.dev,
        "lane": d.lane,
        "verdict": d.verdict or verdict_of(d.reason),
        "reason": d.reason,
        "kind": d.kind,
        "t_ms": d.t_ms,
        "received_ms": d.received_ms,
        "forwarded": d.state == "forwarded",
    }


def snapshot(
    store: Store,
    capacities: dict[str, int],
    now_s: float,
    trend: OutboxTrend,
    health: dict[str, Any],
) -> dict[str, Any]:
    """Everything the status page shows besides the live feed (also GET /api/status)."""
    now_ms = int(now_s * 1000)
    device_rows = devices(store, now_ms, trend)
    lane_rows = lanes(store, capacities, now_ms, day_start_ms(now_s))
    store_alerts = list(health.get("alerts", []))
    return {
        "now_ms": now_ms,
        "gateway": health.get("gateway"),
        "site": health.get("site"),
        "devices": device_rows,
        "devices_online": sum(1 for d in device_rows if d["online"]),
        "lanes": lane_rows,
        "banners": banners(device_rows, lane_rows, store_alerts),
        # every alert, the gateway's and each scanner's: the same list as /metrics and
        # `chot gateway status --json` (gateway/web/alerts.py)
        "alerts": [a.as_dict() for a in alert_list(device_rows, store_alerts)],
        "quarantine": store.recent_quarantine(10),
        "health": health,
    }


def report(store: Store, config: Any, now_ms: int) -> dict[str, Any]:
    """`chot gateway status`: the store's figures and every alert, read by a process of its
    own while the gateway runs (so no outbox trend and no forwarder: the centre is judged by
    how long the oldest event has waited, alerts.central_unreachable)."""
    from gateway.web.alerts import gateway_alerts

    gateway = gateway_alerts(
        store,
        central_url=config.central.url,
        unreachable_alert_min=config.central.unreachable_alert_min,
        now_ms=now_ms,
    )
    rows = devices(store, now_ms, OutboxTrend())
    return {
        "gateway": config.id,
        "site": config.site,
        "now_ms": now_ms,
        "depth": store.depth(),
        "forward_lag_s": store.forward_lag_s(now=now_ms),
        "store_bytes": store.size_bytes(),
        "counters": store.counters(),
        "rejects": store.reject_counts(),
        "open_gaps": store.open_gaps(),
        "alerts": gateway,
        "active_alerts": [a.as_dict() for a in alert_list(rows, gateway)],
        "devices": [
            {
                "dev": row["device"],
                "online": row["online"],
                "ack": row["contiguous_seq"],
                "clock": row["clock"],
                "alerts": row["alerts"],
            }
            for row in rows
        ],
    }
