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

Language: as the gateway's status page, Vietnamese unless the browser's Accept-Language asks
for English or the person uses the switch (`?lang=en`, kept in a session cookie; the form
carries it to the answer of its POST).
"""

import html
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central.config import hash_token
from central.operators import CredentialRefused, Identity
from common.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGE_NAMES,
    LANGUAGES,
    N_,
    from_accept_language,
    normalize,
    translator,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "chot_session"
CSRF_COOKIE = "chot_login_csrf"
SESSION_S = 8 * 3600
MAX_SESSIONS = 10_000
MAX_FORM_BYTES = 4096

LANG_COOKIE = "chot_lang"  # as the gateway's status page: the switch holds for the session

FORM = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font-family: sans-serif; margin: 2em; }} input {{ font-size: 1em; }}
#languages {{ float: right; }}</style>
</head><body>
<nav id="languages">{languages}</nav>
<h1>{heading}</h1>
<p>{intro}</p>
{error}
<form method="post" action="login">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<input type="hidden" name="lang" value="{lang}">
<label>{token_label} <input type="password" name="token" autocomplete="off" required size="48">
</label>
<button type="submit">{submit}</button>
</form>
</body></html>
"""
TITLE = N_("chot: sign in to the reports")
HEADING = N_("Sign in to the checkpoint reports")
INTRO = N_("Paste the token from your chot credential file (the token line).")
TOKEN_LABEL = N_("Token")
SUBMIT = N_("Log in")
TOO_LARGE = N_("Form too large.")
TRY_AGAIN = N_("The form expired. Please try again.")
UNKNOWN = N_("Not signed in: unknown or revoked credential.")
NO_REPORTS = N_("Not signed in: this credential may not see the reports.")


def choose_language(request: Request, posted: str | None = None) -> tuple[str, bool]:
    """(language, whether the switch was used now and the cookie must be set): `?lang=`, else
    the form's own field, the cookie, the browser's Accept-Language, else Vietnamese."""
    switched = normalize(request.query_params.get("lang"))
    if switched:
        return switched, True
    chosen = (
        normalize(posted)
        or normalize(request.cookies.get(LANG_COOKIE))
        or from_accept_language(request.headers.get("accept-language"))
    )
    return chosen or DEFAULT_LANGUAGE, False


def _language_links(lang: str, next_: str) -> str:
    """The switch: the other languages as links that keep where the person was going."""
    links = []
    for code in LANGUAGES:
        name = html.escape(LANGUAGE_NAMES[code])
        if code == lang:
            links.append(f'<b lang="{code}">{name}</b>')
        else:
            href = html.escape(f"login?lang={code}&next={quote(next_, safe='/')}")
            links.append(f'<a href="{href}" lang="{code}" hreflang="{code}">{name}</a>')
    return " | ".join(links)


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

    def form(
        lang: str, next_: str, error: str = "", status: int = 200, switched: bool = False
    ) -> HTMLResponse:
        tr = translator(lang)
        csrf = secrets.token_urlsafe(24)
        target = _safe_next(next_)
        page = FORM.format(
            lang=lang,
            title=html.escape(tr.gettext(TITLE)),
            heading=html.escape(tr.gettext(HEADING)),
            intro=html.escape(tr.gettext(INTRO)),
            token_label=html.escape(tr.gettext(TOKEN_LABEL)),
            submit=html.escape(tr.gettext(SUBMIT)),
            languages=_language_links(lang, target),
            csrf=csrf,
            next=html.escape(target),
            error=f'<p role="alert" id="error">{html.escape(tr.gettext(error))}</p>'
            if error
            else "",
        )
        response = HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
        _cookie(response, CSRF_COOKIE, csrf, 900)
        if switched:  # no Max-Age: gone when the browser closes
            response.set_cookie(LANG_COOKIE, lang, secure=True, httponly=True, samesite="strict")
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/report") -> HTMLResponse:
        lang, switched = choose_language(request)
        return form(lang, next, switched=switched)

    @app.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return form(choose_language(request)[0], "/report", TOO_LARGE, 413)
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        lang, _switched = choose_language(request, fields.get("lang"))
        next_ = fields.get("next", "/report")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = fields.get("csrf", "")
        if not _same_origin(request) or not cookie or not secrets.compare_digest(cookie, sent):
            log.warning("sign-in refused: CSRF check failed")
            return form(lang, next_, TRY_AGAIN, 403)
        token = fields.get("token", "").strip()
        try:
            identity = authenticate(token)
        except CredentialRefused as exc:
            log.info("sign-in refused: %s", exc)
            return form(lang, next_, UNKNOWN, 401)
        try:
            identity.require("report")
        except CredentialRefused:
            log.warning(
                "sign-in refused: %s (%s) may not see reports", identity.name, identity.role
            )
            return form(lang, next_, NO_REPORTS, 401)
        log.info("operator %s (%s) signed in to the report page", identity.name, identity.role)
        response = RedirectResponse(_safe_next(next_), status_code=303)
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
