"""Browser sign-in for health staff: the report page without a bearer header.

GET /login shows a small form; the person pastes the token of their credential (the ``token``
line of the file `chot provision operator add NAME --role report|tracer` gave them). POST /login
checks it like a bearer token and sets a session cookie: a random id (the server keeps id ->
operator name and token hash; nothing to forge), ``Secure; HttpOnly; SameSite=Strict``, 8 h.
Each request re-checks the operator, so a revoked credential ends its sessions at once.

CSRF: SameSite=Strict keeps the cookies off cross-site requests; on top of that the login and
logout forms carry a token that must equal a pre-login cookie (double submit), and a POST whose
Origin is another site is refused. Sessions live in memory: a restart asks people to sign in
again, which is the safe side.
"""

import html
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central.config import hash_token
from central.operators import CredentialRefused, Identity

log = logging.getLogger(__name__)

SESSION_COOKIE = "chot_session"
CSRF_COOKIE = "chot_login_csrf"
SESSION_S = 8 * 3600
MAX_SESSIONS = 10_000
MAX_FORM_BYTES = 4096

FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chot: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: sans-serif; margin: 2em; }} input {{ font-size: 1em; }}</style>
</head><body>
<h1>Sign in</h1>
<p>Paste the token from your chot credential file.</p>
{error}
<form method="post" action="login">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autocomplete="off" required size="48"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
"""


@dataclass(frozen=True)
class Session:
    name: str
    token_sha256: str
    expires: float


class Sessions:
    """Session id -> operator; bounded, expiring, thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def open(self, name: str, token_sha256: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
            if len(self._by_id) >= MAX_SESSIONS:  # the oldest go first
                for key in sorted(self._by_id, key=lambda k: self._by_id[k].expires)[:100]:
                    del self._by_id[key]
            self._by_id[sid] = Session(name, token_sha256, now + SESSION_S)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is None or session.expires <= self._clock():
                self._by_id.pop(sid, None)
                return None
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def _safe_next(value: str) -> str:
    """Only a path on this centre (no scheme, no host, no //): no open redirect."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/report"
    return value


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # old browsers send none; an opaque origin is refused
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _cookie(response: Response, name: str, value: str, max_age: int, path: str = "/") -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=True, httponly=True, samesite="strict"
    )


def add_routes(
    app: FastAPI, sessions: Sessions, authenticate: Callable[[str | None], Identity]
) -> None:
    """GET/POST /login and POST /logout; `authenticate` is the API's bearer check."""

    def form(next_: str, error: str = "", status: int = 200) -> HTMLResponse:
        csrf = secrets.token_urlsafe(24)
        page = FORM.format(
            csrf=csrf,
            next=html.escape(_safe_next(next_)),
            error=f'<p role="alert" id="error">{html.escape(error)}</p>' if error else "",
        )
        response = HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
        _cookie(response, CSRF_COOKIE, csrf, 900)
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_form(next: str = "/report") -> HTMLResponse:
        return form(next)

    @app.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return form("/report", "Form too large.", 413)
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = fields.get("csrf", "")
        if not _same_origin(request) or not cookie or not secrets.compare_digest(cookie, sent):
            log.warning("sign-in refused: CSRF check failed")
            return form(fields.get("next", "/report"), "Please try again.", 403)
        token = fields.get("token", "").strip()
        try:
            identity = authenticate(token)
            identity.require("report")
        except CredentialRefused as exc:
            return form(fields.get("next", "/report"), f"Not signed in: {exc}", 401)
        log.info("operator %s (%s) signed in to the report page", identity.name, identity.role)
        response = RedirectResponse(_safe_next(fields.get("next", "/report")), status_code=303)
        sid = sessions.open(identity.name, hash_token(token))
        _cookie(response, SESSION_COOKIE, sid, SESSION_S)
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return Response(status_code=403)
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
