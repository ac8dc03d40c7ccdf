"""HTTP service: the central ingest contract for gateways, and read endpoints for operators.

POST /api/v1/events   gateway bearer token (registry) + X-Chot-Gateway; CBOR batch in, JSON out
GET  /api/v1/report, /health, /load, /stats    operator token with role "report" (logged)
GET  /api/v1/visits, /contacts                 operator token with role "tracing" (logged)
GET/POST /login, POST /logout                  browser sign-in for the report page (cookie)
PUT  /api/v1/documents/{scope}/{name}          operator token with role "ops": a signed document
GET  /api/v1/documents                         gateway token: index of its site's documents (ETag)
GET  /api/v1/documents/{scope}/{name}          gateway token: the bytes; If-None-Match "v<n>" -> 304
GET  /healthz                                  liveness, no auth
"""

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from central import queries
from central.audit import AuditUnavailable
from central.backends import open_store
from central.config import CentralConfig, load_config
from central.documents import ALL_SITES, DocumentStore, index_etag, version_etag
from central.ingest import BatchError, TimeWindow, ingest_batch, parse_batch
from central.migrate import migrate
from central.operators import CredentialRefused, Identity, OperatorBook
from central.store import Store, StoreUnavailable
from central.web import login, report_page
from common.reload import ReloadingFile
from protocol.documents import MAX_DOCUMENT_BYTES
from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry, Signer
from protocol.trust import root_keyring

log = logging.getLogger(__name__)


def _load_registry(path: Path) -> Registry:
    registry = Registry.load(path)
    log.info("loaded registry %s (%d signers)", path, len(registry.signers))
    return registry


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _error(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"reason": reason, "detail": detail}, status_code=status)


def create_app(config: CentralConfig, store: Store | None = None) -> FastAPI:
    """Wire the service; `store` may be given (tests, bench), else it is opened from config."""
    store = store or open_store(config.store)
    # re-read when the file changes: a revoked device or gateway takes effect without a
    # restart; a broken file keeps the last good registry (an empty one refuses everyone)
    registries = ReloadingFile(config.registry, _load_registry, initial=Registry(), name="registry")
    app = FastAPI(title="chot central", version="1")

    @app.exception_handler(AuditUnavailable)
    async def audit_unavailable(request: Request, exc: AuditUnavailable) -> JSONResponse:
        # no leader and the local audit spool failed: refused, never answered unaudited
        return _error(503, "audit_unavailable", str(exc))

    app.state.store = store

    def authenticate_gateway(request: Request, registry: Registry) -> Signer | None:
        gateway_id = request.headers.get("x-chot-gateway", "")
        token = _bearer(request)
        signer = registry.signers.get(gateway_id)
        if token is None or signer is None or signer.role != "gateway":
            return None
        return signer if registry.check_token(gateway_id, token) else None

    async def read_body(request: Request, limit: int = config.max_body_bytes) -> bytes | None:
        """The body, or None once it passes the limit (we stop reading there)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

    @app.post("/api/v1/events")
    async def post_events(request: Request) -> Any:
        registry = registries.get()
        gateway = authenticate_gateway(request, registry)
        if gateway is None:
            log.warning(
                "refused batch: bad token for gateway %r",
                request.headers.get("x-chot-gateway", "")[:64],
            )
            return _error(401, "unauthorized", "unknown gateway or bad bearer token")
        body = await read_body(request)
        if body is None:
            return _error(413, Reason.TOO_LARGE, f"body larger than {config.max_body_bytes} B")
        try:
            items = parse_batch(body, gateway.id)
        except BatchError as exc:
            log.warning("gateway %s: batch refused: %s", gateway.id, exc)
            return _error(exc.status, exc.reason, exc.detail)
        now_ms = int(time.time() * 1000)
        window = TimeWindow(now_ms, config.retention_days)  # event times believed
        try:
            result = await run_in_threadpool(
                ingest_batch, items, gateway, registry, store, now_ms, window
            )
        except StoreUnavailable as exc:  # no leader, or no standby to make it durable: retry
            log.warning("gateway %s: batch not stored, store unavailable: %s", gateway.id, exc)
            return _error(503, "store_unavailable", str(exc))
        # plain lists of strings: skip FastAPI's per-element jsonable_encoder walk
        return JSONResponse(result.to_json())

    operators = OperatorBook(config)  # inline [operators] + the operator registry file
    sessions = login.Sessions()

    def identify(request: Request) -> Identity:
        """Bearer token; for reads, a browser session cookie (SameSite=Strict) too."""
        token = _bearer(request)
        if token is not None:
            return operators.authenticate(token)
        session = sessions.get(request.cookies.get(login.SESSION_COOKIE))
        if session is not None and request.method == "GET":
            identity = operators.by_hash(session.token_sha256)  # revoked: refused at once
            if identity.name == session.name:
                return identity
        raise CredentialRefused("operator credential required")

    def operator(request: Request, role: str) -> Identity:
        try:
            identity = identify(request)
        except CredentialRefused as exc:
            raise HTTPException(401, str(exc)) from None
        try:
            return identity.require(role)
        except CredentialRefused as exc:
            log.warning("operator %s (%s) refused: needs %s", identity.name, identity.role, role)
            raise HTTPException(403, str(exc)) from None

    def audit(who: Identity, query: str, params: dict, rows: int) -> None:
        queries.log_access(store, who.name, "api", query, params, rows, who.role)

    def local(rows: list[dict]) -> list[dict]:
        return queries.local_times(rows, config.timezone_for)

    documents = DocumentStore(
        store, root_keyring(bytes.fromhex(k) for k in config.root_public_keys)
    )

    @app.put("/api/v1/documents/{scope}/{name}")
    async def put_document(scope: str, name: str, request: Request) -> Any:
        by = operator(request, "ops").name
        body = await read_body(request, MAX_DOCUMENT_BYTES)
        if body is None:
            return _error(413, Reason.TOO_LARGE, f"body larger than {MAX_DOCUMENT_BYTES} B")
        try:
            published = await run_in_threadpool(documents.put, scope, name, body, by=by)
        except ValueError as exc:
            return _error(404, "unknown_document", str(exc))
        except ProtocolError as exc:
            log.warning("ops %s: document %s/%s refused: %s", by, scope, name, exc.reason)
            return _error(409 if exc.reason is Reason.ROLLBACK else 422, exc.reason, str(exc))
        except StoreUnavailable as exc:
            return _error(503, "store_unavailable", str(exc))
        ref = published.ref
        if published.changed:
            log.info("ops %s published %s/%s version %d", by, scope, name, ref.version)
        return {**ref.to_json(), "changed": published.changed}

    @app.get("/api/v1/documents")
    def get_document_index(request: Request) -> Any:
        gateway = authenticate_gateway(request, registries.get())
        if gateway is None:
            return _error(401, "unauthorized", "unknown gateway or bad bearer token")
        refs = documents.index(gateway.site)
        etag = index_etag(refs)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(
            {"site": gateway.site, "documents": [r.to_json() for r in refs]},
            headers={"ETag": etag},
        )

    @app.get("/api/v1/documents/{scope}/{name}")
    def get_document(scope: str, name: str, request: Request) -> Any:
        gateway = authenticate_gateway(request, registries.get())
        if gateway is None:
            return _error(401, "unauthorized", "unknown gateway or bad bearer token")
        if scope not in (ALL_SITES, gateway.site):
            return _error(403, "forbidden", "another site's document")
        version = documents.version(scope, name)
        if version is None:
            return _error(404, "unknown_document", f"no document {scope}/{name}")
        etag = version_etag(version)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        found = documents.get(scope, name)
        if found is None:
            return _error(404, "unknown_document", f"no document {scope}/{name}")
        version, raw = found
        return Response(raw, media_type="application/cose", headers={"ETag": version_etag(version)})

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "store": store.dialect}

    @app.get("/api/v1/visits")
    def get_visits(
        request: Request,
        sub: str = Query(pattern="^[0-9a-f]{32}$"),
        from_ms: int = 0,
        to_ms: int = 2**62,
    ) -> list[dict]:
        who = operator(request, "tracing")
        rows = queries.visits(
            store, bytes.fromhex(sub), from_ms, to_ms, operator=who.name, via="api", role=who.role
        )
        return local(rows)

    @app.get("/api/v1/contacts")
    def get_contacts(
        request: Request,
        sub: str = Query(pattern="^[0-9a-f]{32}$"),
        window_min: int = Query(30, ge=1, le=24 * 60),
        from_ms: int = 0,
        to_ms: int = 2**62,
    ) -> list[dict]:
        who = operator(request, "tracing")
        rows = queries.contacts(
            store,
            bytes.fromhex(sub),
            window_min,
            from_ms,
            to_ms,
            operator=who.name,
            via="api",
            role=who.role,
        )
        return local(rows)

    @app.get("/api/v1/report")
    def get_report(
        request: Request, day: dt.date, site: str | None = None, days: int = Query(1, ge=1, le=62)
    ) -> list[dict]:
        who = operator(request, "report")
        rows = queries.report(store, day, site=site, days=days, tz=config.timezone)
        audit(who, "report", {"day": day, "site": site, "days": days}, len(rows))
        return rows

    @app.get("/api/v1/health")
    def get_health(request: Request, from_ms: int, to_ms: int) -> list[dict]:
        who = operator(request, "report")
        rows = queries.health(store, from_ms, to_ms)
        audit(who, "health", {"from": from_ms, "to": to_ms}, len(rows))
        return local(rows)

    @app.get("/api/v1/load")
    def get_load(request: Request, site: str | None = None, since_ms: int = 0) -> list[dict]:
        who = operator(request, "report")
        rows = queries.load(store, site=site, since_ms=since_ms)
        audit(who, "load", {"site": site, "since": since_ms}, len(rows))
        return local(rows)

    @app.get("/api/v1/stats")
    def get_stats(request: Request) -> dict:
        who = operator(request, "report")
        result = queries.stats(store)
        audit(who, "stats", {}, len(result["by_device"]))
        return result

    # totals per checkpoint and period: page, CSV and JSON (central/web/report_page.py)
    report_page.add_routes(app, store, config.timezone, operator, audit)
    login.add_routes(app, sessions, operators.authenticate)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory central.api:app_from_env` ($CHOT_CENTRAL_CONFIG)."""
    config = load_config(os.environ["CHOT_CENTRAL_CONFIG"])
    store = open_store(config.store)
    migrate(store)
    return create_app(config, store)
