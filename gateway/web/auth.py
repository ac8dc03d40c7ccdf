"""Operator logins: password check, server-side sessions in signed cookies, CSRF tokens.

- Passwords: the provisioning users file (`operators.json`, argon2id hashes), re-read when it
  changes so a new operator can log in without a restart (`common.reload.ReloadingFile`).
  Each check costs argon2's memory (64 MiB with the default parameters), so `PasswordGate`
  lets only a few run at once and refuses the rest after a short queue (503), and the login
  limits (`gateway.store.auth_store`) are counted BEFORE a check, in the store.
- Sessions: a cookie `payload.signature`, HMAC-SHA256 over the payload with the session
  secret. The payload names a session row in the store (`web_sessions`): logout revokes the
  row and expiry is checked there, so neither depends on the process staying up.
- CSRF: every form carries a token derived from the session id (HMAC), checked on every POST;
  the login form uses a short-lived pre-login cookie the same way. Cookies are SameSite=Strict.
"""

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.reload import ReloadingFile
from gateway.store.auth_store import AuthStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "chot_session"
LOGIN_COOKIE = "chot_login"
SESSION_TTL_S = 12 * 3600  # one long shift
LOGIN_FORM_TTL_S = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _read_users(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    hashes = {str(u): str(v["hash"]) for u, v in data["users"].items()}
    log.info("loaded %d operator logins from %s", len(hashes), path)
    return hashes


class Users:
    """The operators' users file: {"version": 1, "users": {name: {"hash": "$argon2id$..."}}}.

    Re-read when it changes; a broken file keeps the last good logins, a missing one means
    nobody can log in."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_hex(16))  # equal work for unknown users
        self.checks = 0  # argon2 verifications run (tests count them)
        self._checks_lock = threading.Lock()
        self._file = (
            None
            if path is None
            else ReloadingFile(
                path, _read_users, initial={}, name="operators file", when_missing=dict
            )
        )

    def _load(self) -> dict[str, str]:
        return {} if self._file is None else self._file.get()

    def verify(self, user: str, password: str) -> bool:
        stored = self._load().get(user)
        with self._checks_lock:
            self.checks += 1
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


class PasswordGate:
    """At most `concurrent` password checks at once and `queue` logins waiting up to `wait_s`
    for a turn; beyond that `enter()` answers False and the caller sends 503. Bounds memory
    (argon2) and the web threads a login burst can hold."""

    def __init__(self, concurrent: int = 2, queue: int = 8, wait_s: float = 2.0) -> None:
        self.concurrent = concurrent
        self.queue = queue
        self.wait_s = wait_s
        self.running = 0
        self.waiting = 0
        self.peak = 0  # most checks ever seen at once (tests read it)
        self._cond = threading.Condition()

    def enter(self) -> bool:
        with self._cond:
            if self.running >= self.concurrent:
                if self.waiting >= self.queue:
                    return False
                self.waiting += 1
                try:
                    got = self._cond.wait_for(lambda: self.running < self.concurrent, self.wait_s)
                finally:
                    self.waiting -= 1
                if not got:
                    return False
            self.running += 1
            self.peak = max(self.peak, self.running)
            return True

    def leave(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify()


@dataclass(frozen=True)
class Session:
    user: str
    sid: str
    expires: int


class SessionCodec:
    """HMAC-signed cookies naming a session row in the store (created at login, revoked at
    logout, expiry enforced there): a logged-out cookie stays refused across restarts."""

    def __init__(self, secret: bytes, store: AuthStore, ttl_s: int = SESSION_TTL_S) -> None:
        if len(secret) < 16:
            raise ValueError("session secret must be at least 16 bytes")
        self.secret = secret
        self.store = store
        self.ttl_s = ttl_s

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, payload, hashlib.sha256).digest())

    def _open(self, cookie: str | None) -> dict | None:
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        try:
            payload = _unb64(body)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._sign(payload), sig):
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < time.time():
            return None
        return data

    def _seal(self, data: dict) -> str:
        payload = json.dumps(data, separators=(",", ":")).encode()
        return _b64(payload) + "." + self._sign(payload)

    def issue(self, user: str) -> tuple[str, Session]:
        row = self.store.create_session(user, self.ttl_s)
        session = Session(user, row.sid, row.expires_ms // 1000)
        return self._seal({"u": user, "sid": session.sid, "exp": session.expires}), session

    def read(self, cookie: str | None) -> Session | None:
        data = self._open(cookie)
        if data is None or not isinstance(data.get("u"), str) or "sid" not in data:
            return None
        row = self.store.live_session(str(data["sid"]))
        if row is None or row.user != data["u"]:
            return None
        return Session(row.user, row.sid, row.expires_ms // 1000)

    def revoke(self, session: Session) -> None:
        self.store.revoke_session(session.sid)

    def csrf_token(self, sid: str) -> str:
        """Per-session token for hidden form fields (derived, so nothing to store)."""
        return self._sign(b"csrf:" + sid.encode())

    def check_csrf(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(sid), token)

    def login_nonce(self) -> tuple[str, str]:
        """(pre-login cookie, its form token): protects the login form against CSRF too."""
        nonce = secrets.token_urlsafe(16)
        cookie = self._seal({"n": nonce, "exp": int(time.time()) + LOGIN_FORM_TTL_S})
        return cookie, self.csrf_token("login:" + nonce)

    def check_login_nonce(self, cookie: str | None, token: str | None) -> bool:
        data = self._open(cookie)
        if data is None or not isinstance(data.get("n"), str):
            return False
        return self.check_csrf("login:" + data["n"], token)


def load_secret(path: Path | None) -> bytes:
    """The session secret file's bytes, or a random per-process secret when none is set."""
    if path is None:
        log.warning("no web.session_secret_file: sessions end when the gateway restarts")
        return secrets.token_bytes(32)
    secret = Path(path).read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"session secret {path} must hold at least 16 bytes")
    return secret
