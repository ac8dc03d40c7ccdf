"""The device outbox: every decided scan, signed and durable on the SD card before it is sent.

One SQLite file (``state_dir/outbox.db``) in WAL mode, 512-byte pages, ``synchronous=NORMAL``
plus an explicit group commit:

- "An event decided is on disk before it is published": ``pending()`` hands out only rows made
  durable by a sync (an fdatasync of the WAL, which holds every committed transaction).
  ``append`` commits without an fsync (a crash of the process loses nothing); the uplink calls
  ``maybe_sync()`` every tick, connected or not, and the rows are synced in one go once the
  oldest has waited ``group_commit_s`` (3 s) or once a filesystem block's worth of them
  (``SYNC_ROWS``, 7 rows of ~0.55 KiB of WAL each) is waiting, whichever comes first: a busy
  lane publishes within a fraction of a second, a quiet one within 3 s, and no fsync ever
  writes less than a block's worth of rows unless the clock says so. Every fsync cleans the WAL's 4 KiB pages, so the next write
  dirties (and writes) a whole page again: one fsync per event costs at least 4 KiB by itself.
  At one scan a second the group commit makes it one fsync per three events; the price is that
  a power cut within those 3 s loses decisions that were shown but never sent (nobody
  downstream saw them, so no gap is claimed, and their seq numbers are reused).
- Each append touches as few pages as it can: no UNIQUE index on ``eid`` (16 random bytes,
  deduplicated downstream), ``last_seq`` is the highest row (written to ``meta`` only when rows
  are deleted), and ``secure_delete`` is off, so an acknowledged row frees its page without
  the page being zeroed and written again (the rows hold pseudonyms and pass references, never
  personal data, and zeroing a page on flash does not erase its old copy anyway).
- Acks and "sent" marks are noted in memory and applied in one transaction at most every
  ``settle_s`` (30 s, or once 64 rows are acknowledged). A crash before that only brings back
  acknowledged rows, which are published again and deduplicated by event id.
- Measured (bench/bench_outbox_io.py: /proc/self/io write_bytes over 1,000 events at one scan
  a second, published and acked as the uplink does): about 3.5 KiB written per event, against
  about 30 KiB with a fsynced transaction per append, per sent mark and per ack.
  tests/device/test_outbox_io.py keeps it under 4 KiB.

Epochs: the outbox picks a random ``epoch`` (1 .. 2^53 - 1) when it is created and every event
carries it as ``ep``; ``seq`` counts from 1 within the epoch. A unit re-imaged with the same
bundle starts a new epoch, so acks the gateway keeps for the old one name nothing here. Rows
leave only on an ack naming this epoch and their seq (``note_ack``: the caller has checked
the gateway's signature, the device and the epoch; see protocol/ack.py). An outbox from
before epochs gets one when opened, and its rows are re-signed under it (same eid and seq):
chosen over a legacy "epoch 0" the gateway would ack, since an ack for epoch 0 would name
every old-format outbox at once.

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
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from protocol import cose
from protocol.events import MAX_SAFE_INT, Event, new_event_id, parse_event_payload, sign_event
from protocol.ids import require_id

log = logging.getLogger(__name__)

PAGE_SIZE = 512  # one scan row (~400 bytes) per page: a WAL frame per append is ~0.5 KiB
GROUP_COMMIT_S = 3.0
SYNC_ROWS = 7  # rows whose WAL frames (~0.55 KiB each) fill a 4 KiB filesystem block
SETTLE_S = 30.0
SETTLE_ROWS = 64
WAL_AUTOCHECKPOINT = 2000  # pages (2 MiB): a page rewritten by many appends is copied once
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY,
    eid    BLOB NOT NULL,
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
    """Thread-safe: the scan loop appends, the uplink thread reads, notes acks and settles."""

    def __init__(
        self,
        path: Path,
        device_id: str,
        site: str,
        key: SigningKey,
        *,
        max_events: int = 100_000,
        max_db_bytes: int | None = None,
        group_commit_s: float = GROUP_COMMIT_S,
        settle_s: float = SETTLE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.device_id = require_id(device_id, "device")
        self.site = require_id(site, "site")
        self.max_events = max_events
        self.group_commit_s = group_commit_s
        self.settle_s = settle_s
        self._monotonic = monotonic
        self._key = key
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect on a new file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durability: sync() before publishing
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        self._db.execute("PRAGMA secure_delete=OFF")  # an acked row frees its page unwritten
        self._db.executescript(SCHEMA)
        if max_db_bytes:
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count={max(8, int(max_db_bytes) // page)}")
        self.epoch = self._meta("epoch") or self._new_epoch()
        lowest, highest, rows = self._db.execute(
            "SELECT MIN(seq), MAX(seq), COUNT(*) FROM events"
        ).fetchone()
        self._rows = rows
        self._last_seq = max(self._meta("last_seq"), highest or 0)
        # every row below the lowest one left was acknowledged (rows leave only on an ack)
        self._acked_to = (lowest - 1) if rows else self._last_seq
        self._settled_to = self._acked_to
        self._acked_above: set[int] = set()  # acked seqs above _acked_to
        self._unsettled: set[int] = set()  # acked seqs above _settled_to, still in the file
        self._acked_since: float | None = None  # when the oldest unsettled ack was noted
        self._sent_to = 0  # the broker has every row up to here (informational)
        self._marked_sent = 0
        self._durable_seq = self._last_seq  # rows found at start were synced by SQLite's open
        self._unsynced_since: float | None = None
        self._unsynced_rows = 0
        self._wal_fd: int | None = None
        self.syncs = 0

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _new_epoch(self) -> int:
        """A random epoch, durable before any row carries it. An outbox from before epochs
        (rows, no epoch) gets one too and its rows are re-signed under it, same eid and seq:
        the gateway acks only events that carry an epoch, and a row it already holds from
        before is a duplicate by eid (acked, never stored twice)."""
        epoch = 1 + secrets.randbelow(MAX_SAFE_INT)
        self._db.execute("PRAGMA synchronous=FULL")  # once per outbox: make the epoch durable
        self._db.execute("BEGIN IMMEDIATE")
        try:
            resigned = self._resign_rows(epoch)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (epoch,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("PRAGMA synchronous=NORMAL")
        log.info(
            "device %s: new outbox epoch %d (%d rows re-signed)", self.device_id, epoch, resigned
        )
        return epoch

    def _resign_rows(self, epoch: int) -> int:
        rows = self._db.execute("SELECT seq, signed FROM events ORDER BY seq").fetchall()
        for seq, signed in rows:
            event = parse_event_payload(cose.parse_sign1(bytes(signed)).payload)
            again = sign_event(replace(event, ep=epoch), self._key)
            self._db.execute("UPDATE events SET signed = ? WHERE seq = ?", (again, seq))
        return len(rows)

    # -- writing ----------------------------------------------------------------------------

    def append(self, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        """Assign the next seq, sign the event with the device key and commit it; it is made
        durable by the group commit before ``pending()`` hands it out.

        ``fields`` are Event fields other than eid/dev/site/seq/ep. Returns (seq, signed).
        Raises OutboxFull when out of space, OutboxError for other storage failures.
        """
        with self._lock:
            seq = self._last_seq + 1
            event = Event(
                eid=new_event_id(),
                dev=self.device_id,
                site=self.site,
                seq=seq,
                ep=self.epoch,
                **fields,
            )
            signed = sign_event(event, self._key)
            try:
                self._db.execute(
                    "INSERT INTO events (seq, eid, t_ms, signed) VALUES (?, ?, ?, ?)",
                    (seq, event.eid, event.t_ms, signed),
                )
            except sqlite3.OperationalError as exc:
                raise _storage_error(exc) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OutboxFull("disk_full", str(exc)) from exc
                raise OutboxError("io_error", str(exc)) from exc
            self._last_seq = seq
            self._rows += 1
            if self._unsynced_since is None:
                self._unsynced_since = self._monotonic()
            self._unsynced_rows += 1
            return seq, signed

    def maybe_sync(self) -> bool:
        """The group commit: sync once the oldest unsynced row has waited ``group_commit_s``
        or ``SYNC_ROWS`` rows wait (the uplink calls it every tick, connected or not). True
        when it synced."""
        with self._lock:
            if not self._sync_due_locked():
                return False
            self._sync_locked()
            return True

    def _sync_due_locked(self) -> bool:
        if self._unsynced_since is None:
            return False
        if self._unsynced_rows >= SYNC_ROWS:
            return True
        return self._monotonic() - self._unsynced_since >= self.group_commit_s

    def sync(self) -> None:
        """Make every committed row durable: fdatasync the WAL (it holds all commits)."""
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        if self._durable_seq >= self._last_seq:
            return
        if self._wal_fd is None:
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)  # the WAL's directory entry too
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        os.fdatasync(self._wal_fd)
        self.syncs += 1
        self._durable_seq = self._last_seq
        self._unsynced_since = None
        self._unsynced_rows = 0

    def mark_sent_through(self, seq: int) -> None:
        """The broker has a copy of every row up to ``seq`` (PUBACKs come in order).
        Informational: noted now, written with the next settle; only the gateway ack frees a
        row."""
        with self._lock:
            self._sent_to = max(self._sent_to, min(seq, self._last_seq))

    def count_sent(self) -> int:
        """Rows the broker has a copy of that are still here (not acknowledged)."""
        with self._lock:
            return sum(
                1
                for seq in range(self._acked_to + 1, self._sent_to + 1)
                if seq not in self._acked_above
            )

    def note_ack(self, upto: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        """The gateway committed every seq 1..``upto`` and those in ``ranges`` (inclusive) of
        THIS epoch. Only seqs this outbox has assigned count; nothing else is touched.
        Returns how many rows are newly acknowledged (deleted by the next settle)."""
        with self._lock:
            named = [(1, upto), *ranges]
            newly = 0
            for lo, hi in named:
                lo, hi = max(lo, self._acked_to + 1), min(hi, self._last_seq)
                for seq in range(lo, hi + 1):
                    if seq not in self._acked_above:
                        self._acked_above.add(seq)
                        newly += 1
            while self._acked_to + 1 in self._acked_above:
                self._acked_above.discard(self._acked_to + 1)
                self._acked_to += 1
            if newly:
                self._unsettled.update(s for s in self._acked_above if s > self._settled_to)
                if self._acked_since is None:
                    self._acked_since = self._monotonic()
            return newly

    def settle(self, force: bool = False) -> int:
        """Delete acknowledged rows and write the sent marks, in one transaction, when due
        (``settle_s`` since the first unsettled ack, or ``SETTLE_ROWS`` waiting) or forced.
        Returns rows deleted."""
        with self._lock:
            waiting = self._acked_to - self._settled_to + len(self._unsettled)
            due = self._acked_since is not None and (
                self._monotonic() - self._acked_since >= self.settle_s or waiting >= SETTLE_ROWS
            )
            if not (force or due) or (waiting == 0 and self._sent_to <= self._marked_sent):
                return 0
            sparse = sorted(self._unsettled)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._db.execute(
                    "DELETE FROM events WHERE seq <= ?", (self._acked_to,)
                ).rowcount
                deleted += sum(
                    self._db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount
                    for seq in sparse
                )
                if self._sent_to > self._marked_sent:
                    self._db.execute(
                        "UPDATE events SET state = 'sent' WHERE seq <= ? AND state = 'pending'",
                        (self._sent_to,),
                    )
                self._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [("acked_seq", self._acked_to), ("last_seq", self._last_seq)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._rows -= deleted
            self._settled_to = self._acked_to
            self._unsettled.clear()
            self._acked_since = None
            self._marked_sent = self._sent_to
            return deleted

    def ack(self, upto: int, ranges: Iterable[tuple[int, int]] = ()) -> int:
        """``note_ack`` then settle at once; returns rows newly acknowledged."""
        newly = self.note_ack(upto, ranges)
        self.settle(force=True)
        return newly

    # -- reading ----------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Row]:
        """Unacknowledged rows with seq > after_seq, in seq order (sent or not), and only
        durable ones: rows waiting for the group commit are synced first once the oldest has
        waited ``group_commit_s``, else they are not handed out yet."""
        with self._lock:
            if self._sync_due_locked():
                self._sync_locked()  # as maybe_sync(), under the same lock
            start = max(after_seq, self._acked_to)
            rows = self._db.execute(
                "SELECT seq, eid, signed FROM events WHERE seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (start, self._durable_seq, limit + len(self._acked_above)),
            ).fetchall()
            acked = self._acked_above
        out = [Row(seq, bytes(eid), bytes(signed)) for seq, eid, signed in rows if seq not in acked]
        return out[:limit]

    @property
    def depth(self) -> int:
        """Rows not acknowledged yet."""
        in_file_acked = self._acked_to - self._settled_to
        in_file_acked += sum(1 for seq in self._unsettled if seq > self._acked_to)
        return max(0, self._rows - in_file_acked)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    @property
    def acked_seq(self) -> int:
        """Every seq up to here is acknowledged."""
        return self._acked_to

    @property
    def full(self) -> bool:
        """At or above the soft bound: alarm, but appending continues."""
        return self.depth >= self.max_events

    def close(self) -> None:
        with self._lock:
            self._sync_locked()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            self._db.close()


def _storage_error(exc: sqlite3.OperationalError) -> OutboxError:
    text = str(exc).lower()
    if "full" in text:  # "database or disk is full"
        return OutboxFull("disk_full", str(exc))
    return OutboxError("storage_error", str(exc))
