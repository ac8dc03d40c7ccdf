"""SQLite backend: the embedded default, so a demo or a small site needs no database server.

One connection guarded by a lock (SQLite serialises writers anyway); WAL so readers do not
block the writer. `INSERT OR IGNORE` on the eid primary key makes ingest idempotent.
"""

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from central.store import COLUMNS, DAY_MS, EventRow, Store

_INSERT = (
    f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def insert_events(self, rows: Sequence[EventRow]) -> set[bytes]:
        inserted: set[bytes] = set()
        with self._transaction() as db:
            for row in rows:
                if db.execute(_INSERT, row.values()).rowcount == 1:
                    inserted.add(row.eid)
        return inserted

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, dict(params or {})).fetchall()]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        with self._transaction() as db:
            return db.execute(sql, dict(params or {})).rowcount

    def delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        cutoff_ms = cutoff_day * DAY_MS
        with self._transaction() as db:
            days = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT t / ? FROM events WHERE t < ? ORDER BY 1", (DAY_MS, cutoff_ms)
                )
            ]
            deleted = db.execute("DELETE FROM events WHERE t < ?", (cutoff_ms,)).rowcount
        return {"days": days, "events": deleted}

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        yield  # apply_migration takes BEGIN IMMEDIATE: SQLite's own writer lock

    def applied_versions(self) -> set[int]:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            return {r[0] for r in db.execute("SELECT version FROM schema_version")}

    def apply_migration(self, version: int, name: str, sql: str) -> None:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)).fetchone():
                return  # another process got there first
            # executescript would COMMIT first; run statement by statement inside our BEGIN.
            for statement in _statements(sql):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version VALUES (?, ?, CAST(strftime('%s','now') AS INTEGER))",
                (version, name),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` is relative, `sqlite:////abs/path.db` absolute (as SQLAlchemy);
    `sqlite://` alone is an in-memory store."""
    path = url.removeprefix("sqlite://").removeprefix("/")
    return path or ":memory:"


def _statements(script: str) -> list[str]:
    """Split a migration script on `;` at line ends (migrations hold no triggers or strings
    with semicolons)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
