"""Read-only JSON API (login required) and the unauthenticated probes /healthz and /metrics.

Every JSON answer is built from the store's pseudonymous read API: decisions, devices,
lanes, rejects, gaps. Manual entries' doc4 is never part of it (see pages.py).
"""

import asyncio
import concurrent.futures
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from gateway.web import metrics, sse, status
from gateway.web.alerts import Alert
from gateway.web.auth import Session
from gateway.web.deps import WebState, operator, web

log = logging.getLogger(__name__)

api = APIRouter(prefix="/api", tags=["status"], dependencies=[Depends(operator)])
probes = APIRouter(tags=["probes"])

# One worker: a stuck store shows up as a timed-out probe, not as a pile of threads.
_healthz_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")


def _snapshot(state: WebState) -> dict[str, Any]:
    ctx = state.ctx
    return status.snapshot(ctx.store, ctx.config.lanes, ctx.now(), state.trend, ctx.health())


@api.get("/status", summary="Everything on the status page except the feed")
def get_status(state: WebState = Depends(web)) -> dict[str, Any]:
    return _snapshot(state)


@api.get("/devices", summary="Scanners: online, last seen, heartbeat health, alerts")
def get_devices(state: WebState = Depends(web)) -> list[dict[str, Any]]:
    return status.devices(state.ctx.store, state.ctx.now_ms(), state.trend)


@api.get("/lanes", summary="Per lane counters today, throughput, capacity, queue estimate")
def get_lanes(state: WebState = Depends(web)) -> list[dict[str, Any]]:
    ctx = state.ctx
    return status.lanes(ctx.store, ctx.config.lanes, ctx.now_ms(), status.day_start_ms(ctx.now()))


@api.get("/decisions", summary="Decisions after a feed id (oldest first); after=0: newest")
def get_decisions(
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    state: WebState = Depends(web),
) -> list[dict[str, Any]]:
    rows = state.ctx.store.recent_decisions(after, limit)
    return [status.decision_dict(r) for r in rows]


@api.get("/rejects", summary="Inputs refused at ingest: counts by reason and the latest")
def get_rejects(
    limit: int = Query(50, ge=1, le=500), state: WebState = Depends(web)
) -> dict[str, Any]:
    store = state.ctx.store
    return {"counts": store.reject_counts(), "recent": store.recent_rejects(limit)}


@api.get("/gaps", summary="Open sequence gaps per device (events not received yet)")
def get_gaps(state: WebState = Depends(web)) -> list[dict[str, Any]]:
    return state.ctx.store.open_gaps()


@api.get("/feed", summary="Live decisions, text/event-stream; resume with Last-Event-ID")
async def get_feed(
    request: Request,
    after: int = Query(0, ge=0),
    state: WebState = Depends(web),
    session: Session = Depends(operator),
) -> StreamingResponse:
    if state.feed_limiter.session_full(session.sid):
        log.warning("feed refused to %s: session holds its share of the feeds", session.user)
        raise HTTPException(429, "this session already holds its share of the live feeds")
    last_id = sse.parse_last_id(request.headers.get("last-event-id")) or after
    log.info("feed opened by %s after id %d", session.user, last_id)
    stream = sse.feed(
        state.ctx.store,
        last_id,
        request.is_disconnected,
        state.feed_limiter,
        poll_s=state.feed_poll_s,
        max_s=state.feed_max_s,
        session=session.sid,
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


def _write_probe(state: WebState) -> dict[str, Any]:
    """A real write transaction (proves the store takes commits), then what a monitor should
    see besides: the gateway's alerts (broker lost, centre unreachable, disk low ...). Those
    do not make the probe fail: the gateway still keeps what it has and catches up later."""
    store = state.ctx.store
    store.bump({"healthz_writes": 1})
    health = state.ctx.health()
    return {
        "depth": store.depth(),
        "mqtt_connected": health.get("mqtt_connected"),
        "alerts": health["alerts"],
    }


@probes.get(
    "/healthz", summary="200 when the store accepts writes, 503 otherwise; alerts in the body"
)
async def healthz(state: WebState = Depends(web)) -> JSONResponse:
    ctx = state.ctx
    future = _healthz_pool.submit(_write_probe, state)
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), state.healthz_timeout_s)
    except Exception as exc:
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.error("healthz: store not writable (%s: %s)", reason, exc)
        body = {"ok": False, "gateway": ctx.config.id, "error": f"store not writable: {reason}"}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"ok": True, "gateway": ctx.config.id, "site": ctx.config.site, **result})


@probes.get("/metrics", summary="Prometheus text exposition", response_class=PlainTextResponse)
def get_metrics(state: WebState = Depends(web)) -> PlainTextResponse:
    ctx = state.ctx
    snap = _snapshot(state)  # the same alerts as the page and `chot gateway status`
    alerts = [Alert(a["kind"], a["device"], a["level"]) for a in snap["alerts"]]
    text = metrics.render(ctx.store, ctx.config.lanes, ctx.now_ms(), alerts)
    return PlainTextResponse(text, media_type=metrics.CONTENT_TYPE)
