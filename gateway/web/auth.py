"""Operator logins: password check, signed session cookies, CSRF tokens, login rate limits.

- Passwords: the provisioning users file (`operators.json`, argon2id hashes), re-read when it
  changes so a new operator can log in without a restart (`common.reload.ReloadingFile`).
- Sessions: a cookie `payload.signature`, HMAC-SHA256 over the payload with the session
  secret (file from config, else random per process: a restart then logs everyone out). The
  payload holds the user, a random session id and the expiry; logout revokes the session id.
- CSRF: every form carries a token derived from the session id (HMAC), checked on every POST;
  the login form uses a short-lived pre-login cookie the same way. Cookies are SameSite=Strict.
- Rate limit: at most `max_failures` failed logins per IP and per user name in `window_s`.
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.reload import ReloadingFile

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
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


class LoginLimiter:
    """Sliding window of failed logins per key ("ip:1.2.3.4", "user:alice")."""

    def __init__(self, max_failures: int = 5, window_s: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def blocked(self, keys: list[str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # bound memory under a spray of names
                self._failures = {k: v for k, v in self._failures.items() if v}


@dataclass(frozen=True)
class Session:
    user: str
    sid: str
    expires: int


class SessionCodec:
    """HMAC-signed cookies; sessions revoked at logout are remembered until they expire."""

    def __init__(self, secret: bytes, ttl_s: int = SESSION_TTL_S) -> None:
        if len(secret) < 16:
            raise ValueError("session secret must be at least 16 bytes")
        self.secret = secret
        self.ttl_s = ttl_s
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

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
        session = Session(user, secrets.token_urlsafe(16), int(time.time()) + self.ttl_s)
        return self._seal({"u": user, "sid": session.sid, "exp": session.expires}), session

    def read(self, cookie: str | None) -> Session | None:
        data = self._open(cookie)
        if data is None or not isinstance(data.get("u"), str) or "sid" not in data:
            return None
        with self._lock:
            if data["sid"] in self._revoked:
                return None
        return Session(data["u"], str(data["sid"]), int(data["exp"]))

    def revoke(self, session: Session) -> None:
        now = time.time()
        with self._lock:
            self._revoked = {s: e for s, e in self._revoked.items() if e > now}
            self._revoked[session.sid] = session.expires

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
