"""Shared state of one web app and the login guard every protected route depends on."""

from dataclasses import dataclass, field

from fastapi import Request

from gateway.store.auth_store import AuthStore, LoginLimits
from gateway.web.alerts import OutboxTrend
from gateway.web.auth import SESSION_COOKIE, PasswordGate, Session, SessionCodec, Users
from gateway.web.context import WebContext
from gateway.web.sse import FeedLimiter


@dataclass
class WebState:
    ctx: WebContext
    users: Users
    sessions: SessionCodec
    auth_store: AuthStore
    login_limits: LoginLimits
    password_gate: PasswordGate
    secure_cookies: bool
    feed_limiter: FeedLimiter
    feed_poll_s: float = 0.5
    feed_max_s: float = 300.0
    healthz_timeout_s: float = 2.0
    refresh_ms: int = 2000
    trend: OutboxTrend = field(default_factory=OutboxTrend)


class NotLoggedIn(Exception):
    """Raised by the guard; app.py turns it into 401 (API) or a redirect to /login (pages)."""


def web(request: Request) -> WebState:
    return request.app.state.web


def operator(request: Request) -> Session:
    """The logged-in operator's session, or NotLoggedIn."""
    session = web(request).sessions.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotLoggedIn()
    return session


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
