"""The gateway's durable store: one SQLite file (WAL) holding every accepted event until the
central store confirms it, plus what the operators' status page reads.

Why it looks like this:
- An event is committed here BEFORE the broker and the device are acknowledged, so a crash
  can only cause a redelivery, which the UNIQUE event id turns into a counted duplicate.
- `synchronous=FULL`: a commit that was acknowledged survives a power cut. The ingest writer
  batches many events per transaction, so the fsync is paid per batch, not per event.
- Each thread gets its own connection (SQLite connections are not shared across threads);
  WAL lets the status page read while ingest and the forwarder write.
- Personal data: only `manual_entries.doc4` (typed by an operator for a paper declaration)
  is personal, and it never leaves this file. Events hold the pseudonymous signed bytes only.

Write API (ingest, forwarder, manual, distribution): `commit_batch`, `pending_batch`,
`mark_forwarded`, `mark_rejected`, `note_peer_ack`, `next_own_seq`, `add_manual_entry`, `add_audit`, `save_document`,
`maintain`.

Read API (documented in gateway/README.md, "Store API"): `devices`, `recent_decisions`,
`lane_counters`, `scans_per_minute`, `lane_load`, `reject_counts`, `recent_rejects`, `depth`,
`forward_lag_s`, `ingest_rate`, `open_gaps`, `manual_entries`, `audit_log`, `documents`,
`counters`, `size_bytes`.
"""

import contextlib
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- the feed cursor: only ever grows
    eid            BLOB NOT NULL UNIQUE,               -- idempotency key everywhere
    dev            TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    typ            TEXT NOT NULL,
    t_ms           INTEGER NOT NULL,                   -- device time
    received_ms    INTEGER NOT NULL,                   -- gateway time
    verdict        TEXT,
    reason         TEXT,
    lane           TEXT,
    kind           TEXT,
    clock          TEXT,
    raw            BLOB NOT NULL,                      -- signed bytes, forwarded unchanged
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'forwarded', 'rejected')),
    central_reason TEXT,
    central_detail TEXT,
    forwarded_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS events_dev_seq ON events (dev, seq);
CREATE INDEX IF NOT EXISTS events_state ON events (state, id);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
CREATE TABLE IF NOT EXISTS devices (
    dev          TEXT PRIMARY KEY,
    contiguous   INTEGER NOT NULL DEFAULT 0,   -- highest seq with everything below stored
    highest      INTEGER NOT NULL DEFAULT 0,
    lane         TEXT,
    last_event_ms INTEGER,
    status       TEXT,
    status_ms    INTEGER,
    heartbeat    TEXT,                         -- last health JSON, as the device sent it
    heartbeat_ms INTEGER
);
CREATE TABLE IF NOT EXISTS gaps (
    id        INTEGER PRIMARY KEY,
    dev       TEXT NOT NULL,
    lo        INTEGER NOT NULL,
    hi        INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    closed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS gaps_open ON gaps (dev, closed_ms);
CREATE TABLE IF NOT EXISTS rejects (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic_dev   TEXT,
    eid         BLOB,
    reason      TEXT NOT NULL,
    detail      TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS manual_entries (
    eid      BLOB PRIMARY KEY,
    t_ms     INTEGER NOT NULL,
    lane     TEXT,
    category TEXT NOT NULL,
    operator TEXT NOT NULL,
    doc4     TEXT                              -- personal: never forwarded, never logged
);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY,
    t_ms   INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    topic      TEXT PRIMARY KEY,
    typ        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    raw        BLOB NOT NULL,
    adopted_ms INTEGER NOT NULL
);
"""

HEARTBEAT_STALE_MS = 90_000
REJECTS_KEPT = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Accepted:
    """A verified event ready to store (ingest builds it from protocol.events.Event)."""

    eid: bytes
    dev: str
    seq: int
    typ: str
    t_ms: int
    raw: bytes
    verdict: str | None = None
    reason: str | None = None
    lane: str | None = None
    kind: str | None = None
    clock: str | None = None


@dataclass(frozen=True)
class Rejected:
    """An input that failed verification; kept (without payload) for the rejects view."""

    reason: str
    detail: str = ""
    topic_dev: str | None = None
    eid: bytes | None = None


@dataclass
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # device -> highest contiguous seq


@dataclass(frozen=True)
class Decision:
    id: int  # increasing cursor: poll with recent_decisions(after_id=last id seen)
    eid: str
    dev: str
    typ: str
    seq: int
    lane: str | None
    verdict: str | None
    reason: str | None
    kind: str | None
    t_ms: int
    received_ms: int
    state: str


@dataclass(frozen=True)
class DeviceInfo:
    dev: str
    lane: str | None
    online: bool
    status: str | None
    last_seen_ms: int | None
    contiguous: int
    highest: int
    open_gaps: int
    heartbeat: dict[str, Any] | None
    alerts: list[str]


@dataclass(frozen=True)
class PendingEvent:
    id: int
    eid: bytes
    raw: bytes


def _rows_in(db: sqlite3.Connection, sql: str, values: list, size: int = 500) -> Iterator[tuple]:
    """Rows of `sql`, whose `IN ({})` takes `values`, bound in slices small enough for
    SQLite's limit on parameters."""
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        yield from db.execute(sql.format(",".join("?" * len(chunk))), chunk)


class Store:
    """Thread-safe facade over one SQLite file; every method opens its own short transaction."""

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.disk_alert_free_bytes = disk_alert_free_bytes
        self.retention_ms = int(retention_days * 86_400_000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)

    # --- connections -----------------------------------------------------------------------

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

    # --- ingest ----------------------------------------------------------------------------

    def commit_batch(
        self,
        accepted: Iterable[Accepted],
        rejected: Iterable[Rejected] = (),
        *,
        statuses: Iterable[tuple[str, str]] = (),
        heartbeats: Iterable[tuple[str, Mapping[str, Any]]] = (),
        received_ms: int | None = None,
    ) -> BatchResult:
        """Store a batch in ONE transaction; returns what to acknowledge to each device.

        Duplicates (same eid) are counted, not stored again; their device is still acked so a
        device that resends after a lost ack can trim its outbox.
        """
        received_ms = received_ms or now_ms()
        result = BatchResult()
        counts: Counter[str] = Counter()
        accepted = list(accepted)
        with self._tx() as db:
            # Set-wise, not row by row: a reconnect storm brings batches of hundreds of events
            # from hundreds of devices, and each statement is a trip through Python.
            seen = self._stored_eids(db, [ev.eid for ev in accepted])
            new: list[Accepted] = []
            for ev in accepted:
                if ev.eid in seen:
                    result.duplicates += 1
                    counts["duplicate"] += 1
                else:
                    seen.add(ev.eid)
                    new.append(ev)
            db.executemany(
                "INSERT INTO events (eid, dev, seq, typ, t_ms, received_ms, verdict, reason, "
                "lane, kind, clock, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        ev.eid,
                        ev.dev,
                        ev.seq,
                        ev.typ,
                        ev.t_ms,
                        received_ms,
                        ev.verdict,
                        ev.reason,
                        ev.lane,
                        ev.kind,
                        ev.clock,
                        ev.raw,
                    )
                    for ev in new
                ],
            )
            # every device heard from is acked, duplicates included: a device that resends
            # after a lost ack can then trim its outbox
            seqs = self._seq_states(db, {ev.dev for ev in accepted})
            for ev in new:  # all rows are in: a late arrival can walk over later seqs
                state = seqs[ev.dev]
                self._advance_seq(db, ev.dev, ev.seq, state, received_ms, counts)
                state[2] = ev.lane or state[2]
            result.stored = len(new)
            counts["stored"] += len(new)
            for rej in rejected:
                result.rejected += 1
                counts[f"reject.{rej.reason}"] += 1
                db.execute(
                    "INSERT INTO rejects (received_ms, topic_dev, eid, reason, detail) "
                    "VALUES (?,?,?,?,?)",
                    (received_ms, rej.topic_dev, rej.eid, rej.reason, rej.detail[:200]),
                )
            db.executemany(
                "UPDATE devices SET contiguous=?, highest=?, last_event_ms=?, lane=? WHERE dev=?",
                [(st[0], st[1], received_ms, st[2], dev) for dev, st in seqs.items()],
            )
            with_gaps = self._devices_with_open_gaps(db, list(seqs))
            for dev in (dev for dev in seqs if dev in with_gaps):
                self._close_gaps(db, dev, seqs[dev][0], received_ms, counts)
            result.acks = {dev: st[0] for dev, st in seqs.items()}
            for dev, state in statuses:
                self._set_status(db, dev, state, received_ms)
            for dev, health in heartbeats:
                self._set_heartbeat(db, dev, health, received_ms)
            self._bump(db, counts)
        return result

    @staticmethod
    def _stored_eids(db: sqlite3.Connection, eids: list[bytes]) -> set[bytes]:
        return {r[0] for r in _rows_in(db, "SELECT eid FROM events WHERE eid IN ({})", eids)}

    @staticmethod
    def _seq_states(db: sqlite3.Connection, devices: set[str]) -> dict[str, list]:
        """Device -> [contiguous, highest, lane, fresh], read once per batch; a device seen
        for the first time gets its row now."""
        states = {
            dev: [contiguous, highest, lane, (contiguous, highest) == (0, 0)]
            for dev, contiguous, highest, lane in _rows_in(
                db,
                "SELECT dev, contiguous, highest, lane FROM devices WHERE dev IN ({})",
                sorted(devices),
            )
        }
        missing = devices - states.keys()
        db.executemany("INSERT INTO devices (dev) VALUES (?)", [(dev,) for dev in missing])
        states.update({dev: [0, 0, None, True] for dev in missing})
        return states

    @staticmethod
    def _devices_with_open_gaps(db: sqlite3.Connection, devices: list[str]) -> set[str]:
        return {
            r[0]
            for r in _rows_in(
                db, "SELECT dev FROM gaps WHERE closed_ms IS NULL AND dev IN ({})", devices
            )
        }

    def _advance_seq(
        self,
        db: sqlite3.Connection,
        dev: str,
        seq: int,
        state: list,
        t_ms: int,
        counts: Counter[str],
    ) -> None:
        contiguous, highest, _, fresh = state
        if fresh:
            # First event ever seen from this device: the store cannot know about events acked
            # before it existed (a device's outbox starts at its oldest unacknowledged event),
            # so the baseline is just below it.
            contiguous = highest = seq - 1
            state[3] = False
        if seq > highest + 1:
            db.execute(
                "INSERT INTO gaps (dev, lo, hi, opened_ms) VALUES (?,?,?,?)",
                (dev, highest + 1, seq - 1, t_ms),
            )
            counts["gaps_opened"] += 1
            log.warning("sequence gap device=%s missing=%d..%d", dev, highest + 1, seq - 1)
        highest = max(highest, seq)
        if seq == contiguous + 1:
            contiguous = self._extend(db, dev, seq, highest)
        state[0], state[1] = contiguous, highest

    @staticmethod
    def _extend(db: sqlite3.Connection, dev: str, contiguous: int, highest: int) -> int:
        """Walk forward over stored seqs so an arrival that fills a gap moves the ack on."""
        while contiguous < highest:
            hit = db.execute(
                "SELECT 1 FROM events WHERE dev=? AND seq=? LIMIT 1", (dev, contiguous + 1)
            ).fetchone()
            if not hit:
                break
            contiguous += 1
        return contiguous

    @staticmethod
    def _close_gaps(
        db: sqlite3.Connection, dev: str, contiguous: int, t_ms: int, counts: Counter[str]
    ) -> None:
        cur = db.execute(
            "UPDATE gaps SET closed_ms=? WHERE dev=? AND closed_ms IS NULL AND hi<=?",
            (t_ms, dev, contiguous),
        )
        if cur.rowcount:
            counts["gaps_closed"] += cur.rowcount
            log.info("sequence gap closed device=%s up to seq=%d", dev, contiguous)

    def note_peer_ack(self, dev: str, seq: int) -> int | None:
        """The paired gateway acknowledged `dev` up to `seq`: it holds those events durably,
        so our own contiguous point may jump to it. Returns the new ack if it moved."""
        with self._tx() as db:
            row = db.execute(
                "SELECT contiguous, highest FROM devices WHERE dev=?", (dev,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO devices (dev, contiguous, highest) VALUES (?,?,?)", (dev, seq, seq)
                )
                return None
            contiguous, highest = row
            if seq <= contiguous:
                return None
            highest = max(highest, seq)
            contiguous = self._extend(db, dev, seq, highest)
            db.execute(
                "UPDATE devices SET contiguous=?, highest=? WHERE dev=?", (contiguous, highest, dev)
            )
            counts: Counter[str] = Counter()
            self._close_gaps(db, dev, contiguous, now_ms(), counts)
            self._bump(db, counts)
            return contiguous

    def ack_for(self, dev: str) -> int:
        row = self._db().execute("SELECT contiguous FROM devices WHERE dev=?", (dev,)).fetchone()
        return row[0] if row else 0

    @staticmethod
    def _set_status(db: sqlite3.Connection, dev: str, state: str, t_ms: int) -> None:
        db.execute(
            "INSERT INTO devices (dev, status, status_ms) VALUES (?,?,?) ON CONFLICT (dev) "
            "DO UPDATE SET status=excluded.status, status_ms=excluded.status_ms",
            (dev, state, t_ms),
        )

    @staticmethod
    def _set_heartbeat(
        db: sqlite3.Connection, dev: str, health: Mapping[str, Any], t_ms: int
    ) -> None:
        db.execute(
            "INSERT INTO devices (dev, heartbeat, heartbeat_ms) VALUES (?,?,?) "
            "ON CONFLICT (dev) DO UPDATE SET heartbeat=excluded.heartbeat, "
            "heartbeat_ms=excluded.heartbeat_ms",
            (dev, json.dumps(dict(health))[:2000], t_ms),
        )

    @staticmethod
    def _bump(db: sqlite3.Connection, counts: Mapping[str, int]) -> None:
        for name, n in counts.items():
            if n:
                db.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (name, n),
                )

    def bump(self, counts: Mapping[str, int]) -> None:
        with self._tx() as db:
            self._bump(db, counts)

    # --- forwarding ------------------------------------------------------------------------

    def pending_batch(self, limit: int) -> list[PendingEvent]:
        rows = (
            self._db()
            .execute(
                "SELECT id, eid, raw FROM events WHERE state='pending' ORDER BY id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [PendingEvent(*r) for r in rows]

    def mark_forwarded(self, eids: Iterable[bytes], t_ms: int | None = None) -> int:
        t_ms = t_ms or now_ms()
        with self._tx() as db:
            n = 0
            for eid in eids:
                n += db.execute(
                    "UPDATE events SET state='forwarded', forwarded_ms=? "
                    "WHERE eid=? AND state='pending'",
                    (t_ms, eid),
                ).rowcount
            self._bump(db, {"forwarded": n})
            return n

    def mark_rejected(self, items: Iterable[tuple[bytes, str, str]]) -> int:
        """Central refused these (eid, reason, detail): kept and counted, never retried."""
        counts: Counter[str] = Counter()
        with self._tx() as db:
            for eid, reason, detail in items:
                cur = db.execute(
                    "UPDATE events SET state='rejected', central_reason=?, central_detail=?, "
                    "forwarded_ms=? WHERE eid=? AND state='pending'",
                    (reason, detail[:200], now_ms(), eid),
                )
                counts[f"central_rejected.{reason}"] += cur.rowcount
            self._bump(db, counts)
        return sum(counts.values())

    # --- gateway's own events --------------------------------------------------------------

    def next_own_seq(self, key: str = "own_seq") -> int:
        """Reserve the next sequence number of the gateway's own events (manual, load)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            seq = (row[0] if row else 0) + 1
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, seq),
            )
            return seq

    def add_manual_entry(
        self,
        eid: bytes,
        t_ms: int,
        lane: str | None,
        category: str,
        operator: str,
        doc4: str | None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO manual_entries (eid, t_ms, lane, category, operator, doc4) "
                "VALUES (?,?,?,?,?,?)",
                (eid, t_ms, lane, category, operator, doc4),
            )

    def add_audit(self, actor: str, action: str, detail: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (t_ms, actor, action, detail) VALUES (?,?,?,?)",
                (now_ms(), actor, action, detail),
            )

    def save_document(self, topic: str, typ: str, version: int, raw: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO documents (topic, typ, version, raw, adopted_ms) VALUES (?,?,?,?,?) "
                "ON CONFLICT (topic) DO UPDATE SET typ=excluded.typ, version=excluded.version, "
                "raw=excluded.raw, adopted_ms=excluded.adopted_ms",
                (topic, typ, version, raw, now_ms()),
            )

    # --- size bound ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes in use (pages minus free pages), plus the WAL file."""
        db = self._db()
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        used = (
            db.execute("PRAGMA page_count").fetchone()[0]
            - db.execute("PRAGMA freelist_count").fetchone()[0]
        )
        wal = self.path.with_name(self.path.name + "-wal")
        return used * page_size + (wal.stat().st_size if wal.exists() else 0)

    def disk_free_bytes(self) -> int:
        return shutil.disk_usage(self.path.parent).free

    def maintain(self, now: int | None = None) -> dict[str, Any]:
        """Prune and check space. Forwarded (and centrally rejected) events go first: those
        past the retention always, the oldest of them when the store nears its bound. Pending
        events are NEVER pruned: if only they remain, `alerts` says so and ingest carries on.
        """
        now = now or now_ms()
        pruned = 0
        with self._tx() as db:
            pruned += self._prune(db, "received_ms < ?", (now - self.retention_ms,))
            db.execute(
                "DELETE FROM rejects WHERE id <= (SELECT MAX(id) FROM rejects) - ?", (REJECTS_KEPT,)
            )
            db.execute(
                "DELETE FROM gaps WHERE closed_ms IS NOT NULL AND closed_ms < ?",
                (now - self.retention_ms,),
            )
        while self.size_bytes() > 0.9 * self.max_bytes:
            with self._tx() as db:
                n = self._prune(
                    db,
                    "id IN (SELECT id FROM events WHERE state != 'pending' ORDER BY id LIMIT 1000)",
                    (),
                )
            if n == 0:
                break
            pruned += n
        if pruned:
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.info("store pruned %d forwarded events", pruned)
        return {"pruned": pruned, "alerts": self.alerts()}

    @staticmethod
    def _prune(db: sqlite3.Connection, where: str, params: tuple) -> int:
        condition = f"state != 'pending' AND {where}"
        db.execute(
            f"DELETE FROM manual_entries WHERE eid IN (SELECT eid FROM events WHERE {condition})",
            params,
        )
        return db.execute(f"DELETE FROM events WHERE {condition}", params).rowcount

    def alerts(self) -> list[str]:
        """Store-level alerts for the status page and the health endpoint."""
        alerts = []
        if self.disk_free_bytes() < self.disk_alert_free_bytes:
            alerts.append("disk_low")
        size = self.size_bytes()
        if size > 0.9 * self.max_bytes:
            alerts.append("store_full" if size > self.max_bytes else "store_near_full")
        return alerts

    # --- read API for the status page -----------------------------------------------------

    def devices(self, now: int | None = None) -> list[DeviceInfo]:
        """Every device the gateway heard of, with health and alerts (offline, stale
        heartbeat, open sequence gap, outbox backlog, clock not synced)."""
        now = now or now_ms()
        db = self._db()
        gaps = dict(
            db.execute(
                "SELECT dev, COUNT(*) FROM gaps WHERE closed_ms IS NULL GROUP BY dev"
            ).fetchall()
        )
        out = []
        for dev, contiguous, highest, lane, last_ms, status, hb, hb_ms in db.execute(
            "SELECT dev, contiguous, highest, lane, last_event_ms, status, heartbeat, "
            "heartbeat_ms FROM devices WHERE dev IS NOT ? ORDER BY dev",
            (self.own_id,),
        ).fetchall():
            health = json.loads(hb) if hb else None
            alerts = []
            if status != "online":
                alerts.append("offline")
            if hb_ms is None or now - hb_ms > HEARTBEAT_STALE_MS:
                alerts.append("heartbeat_stale")
            if gaps.get(dev):
                alerts.append("sequence_gap")
            if health and (health.get("outbox_depth") or 0) > 100:
                alerts.append("outbox_backlog")
            if health and health.get("clock") not in (None, "synced"):
                alerts.append("clock_" + str(health.get("clock")))
            seen = max((t for t in (last_ms, hb_ms) if t is not None), default=None)
            out.append(
                DeviceInfo(
                    dev,
                    lane,
                    status == "online",
                    status,
                    seen,
                    contiguous,
                    highest,
                    gaps.get(dev, 0),
                    health,
                    alerts,
                )
            )
        return out

    def recent_decisions(self, after_id: int = 0, limit: int = 100) -> list[Decision]:
        """Events with id > after_id, oldest first: poll with the last id you saw. With
        after_id=0 you get the newest `limit` (still oldest first)."""
        cols = "id, eid, dev, typ, seq, lane, verdict, reason, kind, t_ms, received_ms, state"
        db = self._db()
        if after_id:
            rows = db.execute(
                f"SELECT {cols} FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        else:
            rows = db.execute(
                f"SELECT {cols} FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()[::-1]
        return [Decision(r[0], r[1].hex(), *r[2:]) for r in rows]

    def lane_counters(self, since_ms: int) -> dict[str, dict[str, int]]:
        """{lane: {reason: count}} for scans received since `since_ms`."""
        out: dict[str, dict[str, int]] = {}
        for lane, reason, n in self._db().execute(
            "SELECT COALESCE(lane, '-'), COALESCE(reason, '-'), COUNT(*) FROM events "
            "WHERE received_ms >= ? AND typ='scan' GROUP BY 1, 2",
            (since_ms,),
        ):
            out.setdefault(lane, {})[reason] = n
        return out

    def scans_per_minute(self, since_ms: int) -> list[tuple[int, str, int]]:
        """[(minute start ms, lane, scans)] by gateway receive time, oldest first."""
        return [
            (m, lane, n)
            for m, lane, n in self._db().execute(
                "SELECT (received_ms / 60000) * 60000 AS m, COALESCE(lane, '-'), COUNT(*) "
                "FROM events WHERE received_ms >= ? AND typ='scan' GROUP BY 1, 2 ORDER BY 1, 2",
                (since_ms,),
            )
        ]

    def lane_load(
        self, capacities: Mapping[str, int], window_s: int = 60, now: int | None = None
    ) -> dict[str, dict[str, float]]:
        """Congestion inputs per lane: scans in the last window, scaled to a minute, against
        the configured capacity (people per minute). `utilisation` >= 1 means people queue;
        `queue_estimate` is the excess over the window (people left waiting, roughly)."""
        now = now or now_ms()
        counts = dict(
            self._db()
            .execute(
                "SELECT COALESCE(lane, '-'), COUNT(*) FROM events "
                "WHERE received_ms >= ? AND typ='scan' GROUP BY 1",
                (now - window_s * 1000,),
            )
            .fetchall()
        )
        out = {}
        for lane in sorted(set(capacities) | set(counts)):
            per_min = counts.get(lane, 0) * 60 / window_s
            cap = capacities.get(lane, 0)
            util = per_min / cap if cap else 0.0
            excess = max(0.0, per_min - cap) * window_s / 60 if cap else 0.0
            out[lane] = {
                "scans": counts.get(lane, 0),
                "per_minute": per_min,
                "capacity": cap,
                "utilisation": util,
                "queue_estimate": excess,
            }
        return out

    def reject_counts(self) -> dict[str, int]:
        """{reason: count} of inputs refused at ingest, since the store was created."""
        return {
            name.removeprefix("reject."): value
            for name, value in self.counters().items()
            if name.startswith("reject.")
        }

    def recent_rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = (
            self._db()
            .execute(
                "SELECT id, received_ms, topic_dev, eid, reason, detail FROM rejects "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {
                "id": r[0],
                "received_ms": r[1],
                "device": r[2],
                "eid": r[3].hex() if r[3] else None,
                "reason": r[4],
                "detail": r[5],
            }
            for r in rows
        ]

    def counters(self) -> dict[str, int]:
        """All counters: stored, duplicate, forwarded, reject.<reason>,
        central_rejected.<reason>, gaps_opened, gaps_closed, ..."""
        return dict(self._db().execute("SELECT name, value FROM counters").fetchall())

    def depth(self) -> dict[str, int]:
        """Events by state: pending (not yet confirmed by central), forwarded, rejected."""
        out = {"pending": 0, "forwarded": 0, "rejected": 0}
        out.update(
            self._db().execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall()
        )
        return out

    def forward_lag_s(self, now: int | None = None) -> float:
        """Age of the oldest event central has not confirmed yet (0 when all are confirmed)."""
        row = (
            self._db()
            .execute("SELECT MIN(received_ms) FROM events WHERE state='pending'")
            .fetchone()
        )
        return 0.0 if row[0] is None else max(0.0, ((now or now_ms()) - row[0]) / 1000)

    def ingest_rate(self, window_s: int = 60, now: int | None = None) -> float:
        """Events stored per second over the last window."""
        now = now or now_ms()
        n = (
            self._db()
            .execute("SELECT COUNT(*) FROM events WHERE received_ms >= ?", (now - window_s * 1000,))
            .fetchone()[0]
        )
        return n / window_s

    def open_gaps(self) -> list[dict[str, Any]]:
        """Sequence gaps still open: {device, lo, hi, missing: [seq...] (first 50), opened_ms}."""
        db = self._db()
        out = []
        for dev, lo, hi, opened in db.execute(
            "SELECT dev, lo, hi, opened_ms FROM gaps WHERE closed_ms IS NULL ORDER BY dev, lo"
        ).fetchall():
            have = {
                r[0]
                for r in db.execute(
                    "SELECT seq FROM events WHERE dev=? AND seq BETWEEN ? AND ?", (dev, lo, hi)
                )
            }
            missing = [s for s in range(lo, min(hi, lo + 10_000) + 1) if s not in have]
            if missing:
                out.append(
                    {
                        "device": dev,
                        "lo": lo,
                        "hi": hi,
                        "missing": missing[:50],
                        "missing_count": len(missing),
                        "opened_ms": opened,
                    }
                )
        return out

    def manual_entries(self, limit: int = 50, *, include_doc4: bool = False) -> list[dict]:
        """Paper declarations entered here, newest first. doc4 only when the caller (an
        operator screen) explicitly asks: it is personal data."""
        rows = (
            self._db()
            .execute(
                "SELECT eid, t_ms, lane, category, operator, doc4 FROM manual_entries "
                "ORDER BY t_ms DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {
                "eid": r[0].hex(),
                "t_ms": r[1],
                "lane": r[2],
                "category": r[3],
                "operator": r[4],
                **({"doc4": r[5]} if include_doc4 else {}),
            }
            for r in rows
        ]

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = (
            self._db()
            .execute(
                "SELECT id, t_ms, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {"id": r[0], "t_ms": r[1], "actor": r[2], "action": r[3], "detail": r[4]} for r in rows
        ]

    def documents(self) -> list[dict[str, Any]]:
        """Documents the gateway publishes (retained): topic, typ, version, raw bytes."""
        rows = (
            self._db()
            .execute("SELECT topic, typ, version, raw, adopted_ms FROM documents ORDER BY topic")
            .fetchall()
        )
        return [
            {"topic": r[0], "typ": r[1], "version": r[2], "raw": r[3], "adopted_ms": r[4]}
            for r in rows
        ]

    def event_count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM events").fetchone()[0]
