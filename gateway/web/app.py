"""create_app: one FastAPI app for the status page, built from a WebContext.

Routes: pages.py (HTML, login required), api.py (`/api/*` JSON + SSE feed, login required;
`/healthz`, `/metrics` open). OpenAPI: `/openapi.json` only — the Swagger/ReDoc pages are
disabled because they load their JavaScript from a CDN and the gateway must work offline.
"""

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from gateway.store.auth_store import AuthStore, LoginLimits
from gateway.web import api, pages
from gateway.web.auth import PasswordGate, SessionCodec, Users, load_secret
from gateway.web.context import WebContext
from gateway.web.deps import NotLoggedIn, WebState
from gateway.web.sse import FeedLimiter

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    ctx: WebContext,
    *,
    feed_poll_s: float = 0.5,
    feed_max_s: float = 300.0,
    max_feeds: int = 20,
    refresh_ms: int = 2000,
    healthz_timeout_s: float = 2.0,
    login_failures_per_minute: int | None = None,
) -> FastAPI:
    """The status page app. Keyword options exist for tests and small tablets; the
    defaults are the production values (login limits and concurrency: `[web]` config)."""
    web = ctx.config.web
    auth_store = AuthStore(ctx.store)
    per_account = login_failures_per_minute or web.login_failures_per_account
    state = WebState(
        ctx=ctx,
        users=Users(web.users_file),
        sessions=SessionCodec(load_secret(web.session_secret_file), auth_store),
        auth_store=auth_store,
        login_limits=LoginLimits(
            per_address=max(web.login_failures_per_address, per_account),
            per_account=per_account,
            window_s=web.login_window_s,
        ),
        password_gate=PasswordGate(web.login_concurrency, web.login_queue, web.login_queue_wait_s),
        secure_cookies=web.tls,
        feed_limiter=FeedLimiter(max_feeds),
        feed_poll_s=feed_poll_s,
        feed_max_s=feed_max_s,
        healthz_timeout_s=healthz_timeout_s,
        refresh_ms=refresh_ms,
    )
    app = FastAPI(
        title=f"chot gateway {ctx.config.id}",
        version="1",
        description="Site gateway status: scanners, lanes, live decisions. "
        "Read-only; no personal data.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.web = state
    app.include_router(pages.router)
    app.include_router(api.api)
    app.include_router(api.probes)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "login required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.middleware("http")
    async def security_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if state.secure_cookies:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response

    log.info("status page ready for gateway %s (login file %s)", ctx.config.id, web.users_file)
    return app
