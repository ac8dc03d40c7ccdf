"""Server-rendered pages: login/logout, the status page, manual entries, the audit log.

The whole site requires login except /login, /healthz, /metrics, /openapi.json and /static.
Every POST checks the session's CSRF token (login: the pre-login cookie's token).
doc4 (last four ID characters of a manual entry) is shown on /manual only, to operators.
"""

import logging
import sqlite3
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from common.i18n import Translator
from gateway.manual import MANUAL_CATEGORIES, MANUAL_OUTCOMES, MANUAL_REFUSALS
from gateway.web import status, texts
from gateway.web.auth import LOGIN_COOKIE, SESSION_COOKIE, Session
from gateway.web.deps import WebState, client_ip, operator, web
from gateway.web.locale import choose_language, locale_context, remember_language, templates
from protocol.ids import is_valid_id

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
STALE_WINDOW_MS = 10 * 60_000  # trust banner: amber for want of a fresh list this recently


def _page(
    request: Request,
    name: str,
    state: WebState,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    config = state.ctx.config
    lang, switched = choose_language(request, config.language)
    base = {
        **locale_context(request, config, lang),
        "gateway": config.id,
        "site": config.site,
        "user": session.user if session else None,
        "csrf": state.sessions.csrf_token(session.sid) if session else "",
        "refresh_ms": state.refresh_ms,
    }
    builders = {k: context.pop(k) for k in list(context) if callable(context[k])}
    for key, build in builders.items():  # parts worded in the page's language
        context[key] = build(Translator(lang))
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    if switched:
        remember_language(response, lang, state.secure_cookies)
    return response


def _audit(state: WebState, actor: str, action: str, detail: str = "") -> None:
    """The page's audit trail in the store; when the store cannot be written (disk full, the
    very moment operators must log in to see it), the entry goes to the journal instead."""
    actor = actor if is_valid_id(actor) else "?"
    try:
        state.ctx.store.add_audit(actor, action, detail)
    except sqlite3.OperationalError as exc:
        log.warning("audit not stored (%s): actor=%s action=%s %s", exc, actor, action, detail)


def _csrf_ok(state: WebState, session: Session, token: str | None, request: Request) -> bool:
    if state.sessions.check_csrf(session.sid, token):
        return True
    _audit(state, session.user, "csrf_refused", f"{request.method} {request.url.path}")
    log.warning("CSRF token refused for %s on %s", session.user, request.url.path)
    return False


# --- login -----------------------------------------------------------------------------------


def _login_page(
    request: Request, state: WebState, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    cookie, token = state.sessions.login_nonce()
    response = _page(
        request, "login.html", state, None, status_code, login_token=token, error=error
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=600,
        httponly=True,
        samesite="strict",
        secure=state.secure_cookies,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, state: WebState = Depends(web)) -> HTMLResponse:
    return _login_page(request, state)


@router.post("/login")
def login(
    request: Request,
    user: str = Form(""),
    password: str = Form(""),
    csrf: str = Form(""),
    state: WebState = Depends(web),
) -> Response:
    user = user.strip()[:64]
    if not state.sessions.check_login_nonce(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_page(request, state, "The form expired. Please try again.", 400)
    ip = client_ip(request)
    # the attempt is recorded before the check: a burst cannot run more checks than the limit
    reservation = state.auth_store.reserve_attempt(ip, user, state.login_limits)
    if not reservation.allowed:
        _audit(state, user, "login_rate_limited", f"ip={ip}")
        response = _login_page(request, state, "Too many failed logins. Wait a minute.", 429)
        response.headers["Retry-After"] = str(reservation.retry_after_s)
        return response
    attempt = reservation.attempt_id
    assert attempt is not None
    if not state.password_gate.enter():
        state.auth_store.attempt_not_run(attempt)
        log.warning(
            "login from %s refused: %d password checks busy", ip, state.password_gate.running
        )
        response = _login_page(request, state, "The gateway is busy. Try again shortly.", 503)
        response.headers["Retry-After"] = "5"
        return response
    try:
        ok = state.users.verify(user, password)
    finally:
        state.password_gate.leave()
    if not ok:
        _audit(state, user, "login_failed", f"ip={ip}")
        log.warning("failed login for %r from %s", user if is_valid_id(user) else "?", ip)
        return _login_page(request, state, "Wrong user name or password.", 401)
    state.auth_store.attempt_succeeded(attempt)
    cookie, _ = state.sessions.issue(user)
    _audit(state, user, "login", f"ip={ip}")
    log.info("operator %s logged in from %s", user, ip)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=state.sessions.ttl_s,
        httponly=True,
        samesite="strict",
        secure=state.secure_cookies,
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    csrf: str = Form(""),
    session: Session = Depends(operator),
    state: WebState = Depends(web),
) -> Response:
    if not _csrf_ok(state, session, csrf, request):
        return Response("CSRF token missing or wrong", status_code=403)
    state.sessions.revoke(session)
    _audit(state, session.user, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- status page ----------------------------------------------------------------------------


@router.get("/")
def index(
    request: Request,
    entered: str | None = None,
    error: str | None = None,
    session: Session = Depends(operator),
    state: WebState = Depends(web),
) -> HTMLResponse:
    ctx = state.ctx
    snap = status.snapshot(ctx.store, ctx.config.lanes, ctx.now(), state.trend, ctx.health())
    feed = [status.decision_dict(d) for d in ctx.store.recent_decisions(0, 30)]
    feed = [row for row in feed if row["typ"] in ("scan", "manual")][::-1]  # newest first
    stale = texts.stale_lanes(ctx.store.lane_counters(ctx.now_ms() - STALE_WINDOW_MS))
    return _page(
        request,
        "status.html",
        state,
        session,
        snap=snap,
        last_id=max((r["id"] for r in feed), default=0),
        feed=lambda tr: [texts.feed_row(row, tr) for row in feed],
        banners=lambda tr: texts.banners(snap, stale, tr),
        words=lambda tr: texts.translated(texts.PAGE_WORDS, tr),
        reasons_short=lambda tr: texts.page_texts(tr)["reasons_short"],
        alerts_short=lambda tr: texts.page_texts(tr)["alerts_short"],
        alert_lines=lambda tr: texts.page_texts(tr)["alerts"],
        clocks=lambda tr: texts.translated(texts.CLOCK_TEXT, tr),
        **_manual_form_context(state, entered, error),
    )


# --- manual entry ---------------------------------------------------------------------------


def _manual_form_context(state: WebState, entered: str | None, error: str | None) -> dict:
    lanes = sorted(state.ctx.config.lanes)
    message = texts.MANUAL_ERRORS.get(error or "")
    return {
        "categories": lambda tr: [
            (c, tr.gettext(texts.CATEGORY_TEXT[c])) for c in MANUAL_CATEGORIES
        ],
        "refusals": lambda tr: [(r, tr.gettext(texts.REFUSAL_TEXT[r])) for r in MANUAL_REFUSALS],
        "lanes": lanes,
        "entered": entered if entered and len(entered) <= 32 and entered.isalnum() else None,
        "form_error": lambda tr: tr.gettext(message) if message else None,
    }


def _valid_manual(
    state: WebState, category: str, doc4: str, lane: str, outcome: str, refusal: str
) -> str | None:
    """The error code of the first wrong field, or None."""
    if category not in MANUAL_CATEGORIES:
        return "category"
    if outcome not in MANUAL_OUTCOMES or (outcome == "turned_away") != (refusal in MANUAL_REFUSALS):
        return "outcome"
    if doc4 and not (len(doc4) == 4 and doc4.isascii() and doc4.isalnum()):
        return "doc4"
    if category == "paper_declaration" and not doc4:
        return "doc4"  # the ID card was checked: its last four characters are the proof
    lanes = state.ctx.config.lanes
    if (lanes and lane not in lanes) or (lane and not is_valid_id(lane)):
        return "lane"
    return None


@router.post("/manual")
def manual_entry(
    request: Request,
    category: str = Form(""),
    doc4: str = Form(""),
    lane: str = Form(""),
    outcome: str = Form("admitted"),
    refusal: str = Form(""),
    csrf: str = Form(""),
    back: str = Form("/"),
    session: Session = Depends(operator),
    state: WebState = Depends(web),
) -> Response:
    if not _csrf_ok(state, session, csrf, request):
        return Response("CSRF token missing or wrong", status_code=403)
    back = back if back in ("/", "/manual") else "/"
    doc4 = doc4.strip().upper()
    lane = lane.strip()
    refusal = refusal if outcome == "turned_away" else ""  # admitted: the list is ignored
    error = _valid_manual(state, category, doc4, lane, outcome, refusal)
    if error:
        return RedirectResponse(f"{back}?error={error}#manual", status_code=303)
    try:
        eid = state.ctx.record_manual_entry(
            category,
            doc4 or None,
            session.user,
            lane or None,
            outcome=outcome,
            refusal=refusal or None,
        )
    except Exception:
        log.exception("manual entry by %s failed", session.user)
        return RedirectResponse(f"{back}?error=failed#manual", status_code=303)
    log.info("manual entry eid=%s %s by %s lane=%s", eid, outcome, session.user, lane or "-")
    return RedirectResponse(f"{back}?entered={eid}#manual", status_code=303)


@router.get("/manual")
def manual_page(
    request: Request,
    entered: str | None = None,
    error: str | None = None,
    session: Session = Depends(operator),
    state: WebState = Depends(web),
) -> HTMLResponse:
    entries = state.ctx.store.manual_entries(limit=200, include_doc4=True)
    return _page(
        request,
        "manual.html",
        state,
        session,
        entries=lambda tr: [texts.manual_row(e, tr) for e in entries],
        **_manual_form_context(state, entered, error),
    )


@router.get("/audit")
def audit_page(
    request: Request, session: Session = Depends(operator), state: WebState = Depends(web)
) -> HTMLResponse:
    return _page(
        request,
        "audit.html",
        state,
        session,
        rows=state.ctx.store.audit_log(300),
        audit_actions=lambda tr: texts.translated(texts.AUDIT_ACTIONS, tr),
    )
