"""The gateway's health numbers, as the status page, `/healthz` and the app's `health()` show.

No personal data: counts, rates, device ids and alert names only. The alerts come from the one
alert model shared with `chot gateway status` and /metrics (gateway/web/alerts.py).
"""

import time
from typing import Any

from gateway.config import GatewayConfig
from gateway.fetcher import DocumentFetcher
from gateway.forwarder import Forwarder
from gateway.ingest import Ingest
from gateway.recent_passes import RecentPassesPublisher
from gateway.store import Store
from gateway.web.alerts import gateway_alerts


def gateway_health(
    config: GatewayConfig,
    store: Store,
    *,
    started_at: float,
    mqtt_connected: bool,
    ingest: Ingest | None,
    forwarder: Forwarder | None,
    fetcher: DocumentFetcher | None,
    recent_passes: RecentPassesPublisher | None,
) -> dict[str, Any]:
    """Ingest rate, store depth, forward lag, rejects by reason and alerts."""
    forward = forwarder.health() if forwarder else None
    alerts = gateway_alerts(
        store,
        central_url=config.central.url,
        unreachable_alert_min=config.central.unreachable_alert_min,
        now_ms=int(time.time() * 1000),
        forward=forward,
    )
    if not mqtt_connected:
        alerts.append("mqtt_disconnected")
    documents = fetcher.health() if fetcher else None
    gaps = store.gap_totals()
    quarantined = store.quarantine_count()
    repeats = recent_passes.repeats() if recent_passes else []
    if any(r["cross_lane"] for r in repeats):
        alerts.append("pass_repeated")  # let through at two lanes while cut off
    return {
        "gateway": config.id,
        "site": config.site,
        "uptime_s": round(time.time() - started_at),
        "mqtt_connected": mqtt_connected,
        "ingest_rate_per_s": store.ingest_rate(60),
        "ingest_totals": dict(ingest.totals) if ingest else {},
        "store_depth": store.depth(),
        "store_bytes": store.size_bytes(),
        "disk_free_bytes": store.disk_free_bytes(),
        "forward_lag_s": store.forward_lag_s(),
        "forward": forward,
        "documents": documents,
        "rejects": store.reject_counts(),
        "quarantined": quarantined,
        "pass_repeats": repeats,  # newest first, no personal data (gateway/recent_passes.py)
        "gaps": gaps,
        "dropped": {
            name.removeprefix("dropped."): n
            for name, n in store.counters().items()
            if name.startswith("dropped.")
        },
        "alerts": alerts,
    }
