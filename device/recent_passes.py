"""The passes accepted at this site recently: this unit's own and its gateway's snapshot.

One pass, one entry per site: the decider asks ``accepted_at(ref)`` before it lets a pass
through. Times are this process's monotonic clock (windows never jump with NTP). On disk
(``recent-passes.db`` in the state folder) each entry keeps the wall time and the boot id with
its monotonic reading, so after a restart in the same boot the window is exact, and after a
reboot it is measured from the wall clock; a wall clock that went back (a Pi without a
battery clock before NTP) counts the entry as accepted at boot: a duplicate is refused rather
than let in twice.

SD cards: entries are written in batches (``flush_s``, and on close), one small transaction;
a unit killed outright loses at most the last ``flush_s`` of its own acceptances, and gets the
site's from the gateway's retained snapshot as soon as it connects again.
"""

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 50_000


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class _Accepted:
    mono: float  # monotonic time it was accepted (this process's clock)
    wall_ms: int  # wall time it was accepted, for a restart after a reboot


class RecentPasses:
    """Bounded ``ref -> accepted time``; thread-safe (the scan loop and paho's thread)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        window_s: float = 1800.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        flush_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        boot_id: str | None = None,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.flush_s = flush_s
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._boot = read_boot_id() if boot_id is None else boot_id
        self._lock = threading.Lock()
        self._table: OrderedDict[bytes, _Accepted] = OrderedDict()  # oldest accepted first
        self._dirty: set[bytes] = set()
        self._gone: set[bytes] = set()
        self._unsorted = False
        self._flushed_at = monotonic()
        self.stats = {"merged": 0, "flushes": 0}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = self._open(path)
            self._load()

    # -- the decider's questions ------------------------------------------------------------

    def accepted_at(self, ref: bytes) -> float | None:
        """Monotonic time the pass was last accepted at this site, if within the window."""
        with self._lock:
            entry = self._table.get(ref)
            return None if entry is None else entry.mono

    def note_accepted(self, ref: bytes, mono: float | None = None) -> None:
        """This unit let the pass through now."""
        now = self._monotonic() if mono is None else mono
        with self._lock:
            self._put(ref, _Accepted(now, self._wall_ms()))
            self._settle()
        self.maybe_flush()

    def merge(self, refs: Iterable[tuple[bytes, float]]) -> int:
        """The gateway's snapshot: ``(ref, age_s)`` pairs, age at arrival. Keeps the later
        acceptance of the two; returns how many entries changed."""
        now, wall = self._monotonic(), self._wall_ms()
        changed = 0
        with self._lock:
            for ref, age_s in refs:
                if age_s > self.window_s:
                    continue
                mono = now - age_s
                held = self._table.get(ref)
                if held is not None and held.mono >= mono:
                    continue
                self._put(ref, _Accepted(mono, wall - int(age_s * 1000)))
                changed += 1
            self._settle()
            self.stats["merged"] += changed
        if changed:
            self.maybe_flush()
        return changed

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)

    # -- bounded memory ---------------------------------------------------------------------

    def _put(self, ref: bytes, entry: _Accepted) -> None:
        """Called with the lock held. The table stays ordered by acceptance time."""
        if self._table and entry.mono < next(reversed(self._table.values())).mono:
            self._unsorted = True  # a gateway entry older than our newest: sort once, after
        self._table[ref] = entry
        self._table.move_to_end(ref)
        self._dirty.add(ref)
        self._gone.discard(ref)

    def _settle(self) -> None:
        """Called with the lock held after a batch of ``_put``: order, then expire."""
        if self._unsorted:
            self._table = OrderedDict(sorted(self._table.items(), key=lambda kv: kv[1].mono))
            self._unsorted = False
        self._expire(self._monotonic())

    def _expire(self, now: float) -> None:
        while self._table:
            ref, oldest = next(iter(self._table.items()))
            if now - oldest.mono <= self.window_s and len(self._table) <= self.max_entries:
                break
            del self._table[ref]
            self._dirty.discard(ref)
            self._gone.add(ref)

    # -- disk -------------------------------------------------------------------------------

    def _open(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS recent (ref BLOB PRIMARY KEY, wall_ms INTEGER NOT NULL,"
            " boot TEXT NOT NULL, mono REAL NOT NULL) WITHOUT ROWID"
        )
        return db

    def _load(self) -> None:
        assert self._db is not None
        now, wall = self._monotonic(), self._wall_ms()
        rows = self._db.execute("SELECT ref, wall_ms, boot, mono FROM recent").fetchall()
        entries = []
        for ref, wall_ms, boot, mono in rows:
            if boot and boot == self._boot and mono <= now:
                age = now - mono  # same boot: the monotonic clock carried on
            else:
                age = max(0.0, (wall - wall_ms) / 1000)  # clock went back: counted as now
            if age <= self.window_s:
                entries.append((bytes(ref), _Accepted(now - age, wall_ms)))
        entries.sort(key=lambda kv: kv[1].mono)
        self._table = OrderedDict(entries[-self.max_entries :])
        self._gone = {bytes(r[0]) for r in rows} - set(self._table)
        log.info("recent passes: %d loaded (%d expired)", len(self._table), len(self._gone))

    def maybe_flush(self) -> None:
        if self._db is not None and self._monotonic() - self._flushed_at >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write what changed since the last flush in one transaction."""
        if self._db is None:
            return
        with self._lock:
            self._flushed_at = self._monotonic()
            if not self._dirty and not self._gone:
                return
            rows = [(ref, e.wall_ms, self._boot, e.mono) for ref, e in self._entries(self._dirty)]
            gone = [(ref,) for ref in self._gone]
            self._dirty, self._gone = set(), set()
            try:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM recent WHERE ref = ?", gone)
                self._db.executemany("INSERT OR REPLACE INTO recent VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
                self.stats["flushes"] += 1
            except sqlite3.Error:
                log.exception("recent passes: %d entries not written", len(rows))
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def _entries(self, refs: set[bytes]) -> list[tuple[bytes, _Accepted]]:
        return [(ref, self._table[ref]) for ref in refs if ref in self._table]

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
