"""The device outbox: every decided scan, signed and durable on the SD card before it is sent.

One SQLite file (``state_dir/outbox.db``) in WAL mode with ``synchronous=FULL``:

- FULL fsyncs the WAL at every commit, so an event whose light was shown survives a power cut
  (NORMAL in WAL mode stays consistent but may lose the last commits). The cost is one fsync
  and a few 4 KiB pages per *person*, not per frame: at a human pace of at most about one scan
  a second per lane that is well under 100 MB of writes a day, negligible wear for an SD card,
  and a few milliseconds of latency after the lights are already on.
- ``seq`` is per device, contiguous from 1, and kept in ``meta`` in the same transaction as the
  row, so it survives restarts even when every row has been acknowledged and deleted.
- Rows stay until the gateway acknowledges them end to end (``ack(seq)``: contiguous, so every
  row with ``seq <= n`` goes). ``state`` only records that the broker took a copy (``sent``);
  anything not acknowledged is published again after a reconnect or an ack timeout.

Full policy (never drop a decided event silently):
- ``max_events`` is a soft bound: at or above it ``full`` is True, the device shows the
  ``outbox_full`` state and flags it in its heartbeat, and appending carries on.
- The hard limit is space: ``max_db_bytes`` (SQLite ``max_page_count``) or the disk itself.
  When SQLite reports the database or disk full, ``append`` raises ``OutboxFull``; the app keeps
  deciding and signalling, counts the decisions it could not record, and writes that count into
  the next event it can record (``extra.unrecorded``) so the loss is visible downstream.
"""

import errno
import logging
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from protocol.events import Event, new_event_id, sign_event
from protocol.ids import require_id

log = logging.getLogger(__name__)

PAGE_SIZE = 4096
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY,
    eid    BLOB NOT NULL UNIQUE,
    t_ms   INTEGER NOT NULL,
    signed BLOB NOT NULL,
    state  TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent'))
);
"""


class OutboxError(RuntimeError):
    """The outbox could not record an event; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class OutboxFull(OutboxError):
    """No space left (database size cap or disk full): the event was NOT recorded."""


@dataclass(frozen=True)
class Row:
    seq: int
    eid: bytes
    signed: bytes


class Outbox:
    """Thread-safe: the scan loop appends, the uplink thread reads, marks and acks."""

    def __init__(
        self,
        path: Path,
        device_id: str,
        site: str,
        key: SigningKey,
        *,
        max_events: int = 100_000,
        max_db_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.device_id = require_id(device_id, "device")
        self.site = require_id(site, "site")
        self.max_events = max_events
        self._key = key
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        if max_db_bytes:
            self._db.execute(f"PRAGMA max_page_count={max(8, int(max_db_bytes) // PAGE_SIZE)}")
        self._depth = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        self._last_seq = self._meta("last_seq")
        self._acked_seq = self._meta("acked_seq")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # -- writing ----------------------------------------------------------------------------

    def append(self, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        """Assign the next seq, sign the event with the device key and commit it durably.

        ``fields`` are Event fields other than eid/dev/site/seq. Returns (seq, signed bytes).
        Raises OutboxFull when out of space, OutboxError for other storage failures.
        """
        with self._lock:
            seq = self._last_seq + 1
            event = Event(eid=new_event_id(), dev=self.device_id, site=self.site, seq=seq, **fields)
            signed = sign_event(event, self._key)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO events (seq, eid, t_ms, signed) VALUES (?, ?, ?, ?)",
                        (seq, event.eid, event.t_ms, signed),
                    )
                    self._db.execute(
                        "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (seq,),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLITE_FULL has already rolled back
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _storage_error(exc) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OutboxFull("disk_full", str(exc)) from exc
                raise OutboxError("io_error", str(exc)) from exc
            self._last_seq = seq
            self._depth += 1
            return seq, signed

    def mark_sent_through(self, seq: int) -> None:
        """The broker has a copy of every row up to ``seq`` (PUBACKs come in order).
        Informational, batched by the caller: only the gateway ack frees a row."""
        with self._lock:
            self._db.execute(
                "UPDATE events SET state = 'sent' WHERE seq <= ? AND state = 'pending'", (seq,)
            )

    def count_sent(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM events WHERE state = 'sent'").fetchone()[
                0
            ]

    def ack(self, seq: int) -> int:
        """The gateway stored every event up to ``seq``: delete them. Returns rows deleted."""
        with self._lock:
            if seq > self._last_seq:
                log.warning(
                    "device %s: ack %d beyond last seq %d ignored",
                    self.device_id,
                    seq,
                    self._last_seq,
                )
                seq = self._last_seq
            if seq <= self._acked_seq:
                return 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,)).rowcount
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('acked_seq', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (seq,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._acked_seq = seq
            self._depth -= deleted
            return deleted

    # -- reading ----------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Row]:
        """Unacknowledged rows with seq > after_seq, in seq order (sent or not)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, eid, signed FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Row(seq, bytes(eid), bytes(signed)) for seq, eid, signed in rows]

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def acked_seq(self) -> int:
        return self._acked_seq

    @property
    def full(self) -> bool:
        """At or above the soft bound: alarm, but appending continues."""
        return self._depth >= self.max_events

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _storage_error(exc: sqlite3.OperationalError) -> OutboxError:
    text = str(exc).lower()
    if "full" in text:  # "database or disk is full"
        return OutboxFull("disk_full", str(exc))
    return OutboxError("storage_error", str(exc))
