"""The SQLite file itself: settings, schema, one connection per thread, short transactions.

- `synchronous=FULL`: a commit that was acknowledged survives a power cut. The ingest writer
  batches many events per transaction, so the fsync is paid per batch, not per event.
- Each thread gets its own connection (SQLite connections are not shared across threads);
  WAL lets the status page read while ingest and the forwarder write.
"""

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("schema.sql")


def now_ms() -> int:
    return int(time.time() * 1000)


def rows_in(db: sqlite3.Connection, sql: str, values: list, size: int = 500) -> Iterator[tuple]:
    """Rows of `sql`, whose `IN ({})` takes `values`, bound in slices small enough for
    SQLite's limit on parameters."""
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        yield from db.execute(sql.format(",".join("?" * len(chunk))), chunk)


def bump(db: sqlite3.Connection, counts: Mapping[str, int]) -> None:
    """Add to the named counters (inside the caller's transaction)."""
    for name, n in counts.items():
        if n:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )


def _private_file(path: Path) -> None:
    """The store holds manual entries' doc4 (personal): directory 0700, files 0600, whatever
    the umask. SQLite gives -wal and -shm the mode of the database file, so creating that
    file 0600 before SQLite opens it covers all three; existing ones are tightened."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(name), 0o600)


class StoreBase:
    """Opens the file and hands out per-thread connections; the write, upkeep and read
    halves of `Store` build on it."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 2_000_000_000,
        disk_alert_free_bytes: int = 500_000_000,
        retention_days: float = 14,
        own_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        # this gateway's own signer id: its manual/load events keep a sequence row like a
        # device's, but it is not a scanner and must not show up (offline) among them
        self.own_id = own_id
        _private_file(self.path)
        self.max_bytes = max_bytes
        self.disk_alert_free_bytes = disk_alert_free_bytes
        self.retention_ms = int(retention_days * 86_400_000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA_FILE.read_text(encoding="utf-8"))

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                with contextlib.suppress(sqlite3.ProgrammingError):  # closed in its thread
                    db.close()
            self._all.clear()
        self._local = threading.local()
