"""The status page's login limits and sessions, kept in the gateway's SQLite file.

Why in the store and not in memory: a restart must neither reset the login limits (an
attacker could restart-and-retry by crashing the process) nor bring a logged-out cookie back.

- `login_attempts`: one row per password check, written BEFORE the check in the same
  `BEGIN IMMEDIATE` transaction that counts the window, so a burst of concurrent logins
  cannot slip past the limit. A successful check marks its row `ok` (it then counts no more).
- `web_sessions`: one row per login; the signed cookie only carries the session id. Logout
  sets `revoked_ms`; expiry is checked here, not only in the cookie.

The tables are created here (IF NOT EXISTS) on the store's own connection, so the web layer
owns its schema and the ingest schema stays as it is.

When the file cannot be written (the disk is full: exactly when operators must see the
`disk_low` alert), attempts and new sessions are kept in memory (`_MemoryTwin`) under the same
limits, recorded before the check as ever, until the store can be written again: the
operator can still log in, and a burst still gets no more checks than the limit.
"""

import itertools
import logging
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Literal

from gateway.store.connection import StoreBase, now_ms

AUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS login_attempts (
    id      INTEGER PRIMARY KEY,
    address TEXT NOT NULL,                 -- source IP of the login request
    account TEXT NOT NULL,                 -- user name as typed (at most 64 characters)
    t_ms    INTEGER NOT NULL,
    ok      INTEGER NOT NULL DEFAULT 0     -- 1 once the password was right
);
CREATE INDEX IF NOT EXISTS login_attempts_key ON login_attempts (address, account, t_ms);
CREATE INDEX IF NOT EXISTS login_attempts_time ON login_attempts (t_ms);
CREATE TABLE IF NOT EXISTS web_sessions (
    sid        TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires_ms);
"""


@dataclass(frozen=True)
class LoginLimits:
    """Password checks allowed per window: from one address (any account), and for one
    account from one address. The account limit is per address on purpose: a burst from
    one machine locks that machine, never the real operator at another one."""

    per_address: int = 10
    per_account: int = 5
    window_s: float = 60.0


@dataclass(frozen=True)
class Reservation:
    """A recorded password check; `attempt_id` is None when the limit refused it."""

    attempt_id: int | None
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        return self.attempt_id is not None


@dataclass(frozen=True)
class SessionRow:
    sid: str
    user: str
    created_ms: int
    expires_ms: int
    revoked_ms: int | None


log = logging.getLogger(__name__)


@dataclass
class _MemoryTwin:
    """Attempts and sessions held while the store cannot be written (ids below zero)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: dict[int, tuple[str, str, int, bool]] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(-1, -1))

    def failed_since(self, since: int, address: str, account: str | None = None) -> list[int]:
        return [
            t
            for a, acc, t, ok in self.attempts.values()
            if a == address and not ok and t >= since and (account is None or acc == account)
        ]


class AuthStore:
    """Login attempts and web sessions over one gateway `Store` (any `StoreBase`)."""

    def __init__(self, store: StoreBase) -> None:
        self.store = store
        self._memory = _MemoryTwin()
        with store._tx() as db:
            for statement in AUTH_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @staticmethod
    def _unwritable(exc: sqlite3.OperationalError) -> None:
        log.warning(
            "gateway store cannot be written (%s): login limits and sessions kept in memory", exc
        )

    # --- login attempts ------------------------------------------------------------------

    def reserve_attempt(
        self, address: str, account: str, limits: LoginLimits, now: int | None = None
    ) -> Reservation:
        """Record one password check before it runs, unless a limit is reached (atomic)."""
        now = now_ms() if now is None else now
        try:
            return self._reserve_in_store(address, account, limits, now)
        except sqlite3.OperationalError as exc:
            self._unwritable(exc)
            return self._reserve_in_memory(address, account, limits, now)

    def _reserve_in_store(
        self, address: str, account: str, limits: LoginLimits, now: int
    ) -> Reservation:
        since = now - int(limits.window_s * 1000)
        with self.store._tx() as db:
            db.execute("DELETE FROM login_attempts WHERE t_ms < ?", (since,))
            by_address = db.execute(
                "SELECT count(*), min(t_ms) FROM login_attempts "
                "WHERE address = ? AND ok = 0 AND t_ms >= ?",
                (address, since),
            ).fetchone()
            by_account = db.execute(
                "SELECT count(*), min(t_ms) FROM login_attempts "
                "WHERE address = ? AND account = ? AND ok = 0 AND t_ms >= ?",
                (address, account, since),
            ).fetchone()
            for (count, oldest), limit in (
                (by_address, limits.per_address),
                (by_account, limits.per_account),
            ):
                if count >= limit:
                    wait_ms = oldest + int(limits.window_s * 1000) - now
                    return Reservation(None, max(1, -(-wait_ms // 1000)))
            cursor = db.execute(
                "INSERT INTO login_attempts (address, account, t_ms) VALUES (?, ?, ?)",
                (address, account, now),
            )
            return Reservation(cursor.lastrowid)

    def _reserve_in_memory(
        self, address: str, account: str, limits: LoginLimits, now: int
    ) -> Reservation:
        """The same limits over the attempts the file still holds plus those in memory."""
        since = now - int(limits.window_s * 1000)
        db = self.store._db()
        with self._memory.lock:
            for key, limit in ((None, limits.per_address), (account, limits.per_account)):
                sql = "SELECT t_ms FROM login_attempts WHERE address = ? AND ok = 0 AND t_ms >= ?"
                values: list[object] = [address, since]
                if key is not None:
                    sql += " AND account = ?"
                    values.append(key)
                times = [t for (t,) in db.execute(sql, values)]
                times += self._memory.failed_since(since, address, key)
                if len(times) >= limit:
                    wait_ms = min(times) + int(limits.window_s * 1000) - now
                    return Reservation(None, max(1, -(-wait_ms // 1000)))
            attempt_id = next(self._memory.ids)
            self._memory.attempts[attempt_id] = (address, account, now, False)
            return Reservation(attempt_id)

    def attempt_succeeded(self, attempt_id: int) -> None:
        if attempt_id < 0:
            with self._memory.lock:
                address, account, t, _ = self._memory.attempts[attempt_id]
                self._memory.attempts[attempt_id] = (address, account, t, True)
            return
        try:
            with self.store._tx() as db:
                db.execute("UPDATE login_attempts SET ok = 1 WHERE id = ?", (attempt_id,))
        except sqlite3.OperationalError as exc:
            # the attempt's row went in, then the disk filled: it stays counted as a failure
            # (stricter by one within the window); the operator still gets in
            self._unwritable(exc)

    def attempt_not_run(self, attempt_id: int) -> None:
        """The check never ran (the gateway was too busy): the attempt does not count."""
        if attempt_id < 0:
            with self._memory.lock:
                self._memory.attempts.pop(attempt_id, None)
            return
        try:
            with self.store._tx() as db:
                db.execute("DELETE FROM login_attempts WHERE id = ?", (attempt_id,))
        except sqlite3.OperationalError as exc:
            self._unwritable(exc)  # as above: counted against the limit until it ages out

    def clear_attempts(self, *, address: str | None = None, account: str | None = None) -> int:
        """Forget failed attempts (an administrator's unlock); returns how many."""
        clauses, values = ["ok = 0"], []
        if address is not None:
            clauses.append("address = ?")
            values.append(address)
        if account is not None:
            clauses.append("account = ?")
            values.append(account)
        with self.store._tx() as db:
            sql = "DELETE FROM login_attempts WHERE " + " AND ".join(clauses)
            return db.execute(sql, values).rowcount

    # --- sessions ------------------------------------------------------------------------

    def create_session(self, user: str, ttl_s: int, now: int | None = None) -> SessionRow:
        now = now_ms() if now is None else now
        row = SessionRow(secrets.token_urlsafe(18), user, now, now + ttl_s * 1000, None)
        try:
            with self.store._tx() as db:
                # sessions expired a day ago are of no use, not even to the audit
                db.execute("DELETE FROM web_sessions WHERE expires_ms < ?", (now - 86_400_000,))
                db.execute(
                    "INSERT INTO web_sessions (sid, user, created_ms, expires_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (row.sid, row.user, row.created_ms, row.expires_ms),
                )
        except sqlite3.OperationalError as exc:
            self._unwritable(exc)
            with self._memory.lock:
                self._memory.sessions[row.sid] = row
        return row

    def live_session(self, sid: str, now: int | None = None) -> SessionRow | None:
        """The session if it exists, is not revoked and has not expired."""
        now = now_ms() if now is None else now
        with self._memory.lock:
            held = self._memory.sessions.get(sid)
        if held is not None:
            live = held.revoked_ms is None and held.expires_ms > now
            return held if live else None
        found = (
            self.store._db()
            .execute(
                "SELECT sid, user, created_ms, expires_ms, revoked_ms FROM web_sessions "
                "WHERE sid = ? AND revoked_ms IS NULL AND expires_ms > ?",
                (sid, now),
            )
            .fetchone()
        )
        return SessionRow(*found) if found else None

    def revoke_session(self, sid: str, now: int | None = None) -> bool:
        return self._revoke("sid", sid, now) > 0

    def revoke_user_sessions(self, user: str, now: int | None = None) -> int:
        return self._revoke("user", user, now)

    def _revoke(self, column: Literal["sid", "user"], value: str, now: int | None) -> int:
        """Revoke the live sessions whose `column` is `value`; how many were live."""
        now = now_ms() if now is None else now
        with self._memory.lock:
            held = [
                row
                for row in self._memory.sessions.values()
                if getattr(row, column) == value and row.revoked_ms is None
            ]
            for row in held:
                self._memory.sessions[row.sid] = SessionRow(
                    row.sid, row.user, row.created_ms, row.expires_ms, now
                )
        try:
            with self.store._tx() as db:
                cursor = db.execute(
                    f"UPDATE web_sessions SET revoked_ms = ? "
                    f"WHERE {column} = ? AND revoked_ms IS NULL",
                    (now, value),
                )
                return cursor.rowcount + len(held)
        except sqlite3.OperationalError as exc:
            if column != "sid":
                raise
            # a logout while the file is full: refused in memory (until a restart)
            self._unwritable(exc)
            with self._memory.lock:
                self._memory.sessions[value] = SessionRow(value, "", now, now, now)
            return 1
