"""Writes: the ingest batch commit, forwarding states, and the gateway's own records.

An event is committed here BEFORE the broker and the device are acknowledged, so a crash can
only cause a redelivery, which the UNIQUE event id turns into a counted duplicate.
"""

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.store import sequence
from gateway.store.connection import StoreBase, bump, now_ms, rows_in
from gateway.store.records import Accepted, BatchResult, PendingEvent, Rejected


class StoreWrites(StoreBase):
    """Every method is one short transaction."""

    # --- ingest ----------------------------------------------------------------------------

    def commit_batch(
        self,
        accepted: Iterable[Accepted],
        rejected: Iterable[Rejected] = (),
        *,
        statuses: Iterable[tuple[str, str]] = (),
        heartbeats: Iterable[tuple[str, Mapping[str, Any]]] = (),
        received_ms: int | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> BatchResult:
        """Store a batch in ONE transaction; returns what to acknowledge to each device.

        Duplicates (same eid) are counted, not stored again; their device is still acked so a
        device that resends after a lost ack can trim its outbox. `statuses` are
        (device, state) pairs, `heartbeats` (device, health) pairs already checked against
        protocol/status.py; `counts` are added to the counters (ingest's own, e.g. drops).
        """
        received_ms = received_ms or now_ms()
        result = BatchResult()
        counts: Counter[str] = Counter(counts or {})
        accepted = list(accepted)
        with self._tx() as db:
            # Set-wise, not row by row: a reconnect storm brings batches of hundreds of events
            # from hundreds of devices, and each statement is a trip through Python.
            new = self._insert_new(db, accepted, received_ms, result, counts)
            # every device heard from is acked, duplicates included: a device that resends
            # after a lost ack can then trim its outbox
            states = sequence.load_states(db, {(ev.dev, ev.ep) for ev in accepted})
            for ev in new:  # all rows are in: a late arrival can walk over later seqs
                state = states[(ev.dev, ev.ep)]
                sequence.advance(db, ev.dev, ev.ep, ev.seq, state, received_ms, counts)
                state.lane = ev.lane or state.lane
            for rej in rejected:
                result.rejected += rej.count
                counts[f"reject.{rej.reason}"] += rej.count
                db.execute(
                    "INSERT INTO rejects (received_ms, topic_dev, eid, reason, detail) "
                    "VALUES (?,?,?,?,?)",
                    (received_ms, rej.topic_dev, rej.eid, rej.reason, rej.detail[:200]),
                )
            sequence.save_states(db, states, received_ms)
            result.acks = {dev: st.contiguous for (dev, _), st in states.items()}
            for dev, state in statuses:
                self._set_status(db, dev, state, received_ms)
            for dev, health in heartbeats:
                self._set_heartbeat(db, dev, health, received_ms)
            bump(db, counts)
        return result

    @staticmethod
    def _insert_new(
        db: sqlite3.Connection,
        accepted: list[Accepted],
        received_ms: int,
        result: BatchResult,
        counts: Counter[str],
    ) -> list[Accepted]:
        """Insert the events not stored yet (one statement); returns them."""
        seen = {
            r[0]
            for r in rows_in(
                db, "SELECT eid FROM events WHERE eid IN ({})", [ev.eid for ev in accepted]
            )
        }
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
        result.stored = len(new)
        counts["stored"] += len(new)
        return new

    def note_peer_ack(self, dev: str, ep: int, ranges: list[tuple[int, int]]) -> int:
        """The paired gateway's signed ack: it holds seqs `ranges` of (dev, ep) durably, so
        they count as held here. Returns the epoch's ack point."""
        with self._tx() as db:
            return sequence.note_peer_ack(db, dev, ep, ranges, now_ms())

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
            (dev, json.dumps(dict(health), separators=(",", ":"), allow_nan=False), t_ms),
        )

    def quarantine(self, ev: Accepted, reason: str, received_ms: int | None = None) -> BatchResult:
        """Set aside a verified event the store refused to commit, with the reason, so the
        commit loop moves on. The gateway holds its signed bytes durably, so it is acked like a
        stored one: its seq counts as received (a device must not keep it in its outbox
        forever). Returns what to acknowledge to the device."""
        received_ms = received_ms or now_ms()
        result = BatchResult()
        try:  # with its seq accounted for, as a stored event
            with self._tx() as db:
                self._quarantine_row(db, ev, reason, received_ms, ev.seq, result)
                if result.quarantined:
                    key = (ev.dev, ev.ep)
                    states = sequence.load_states(db, {key})
                    counts: Counter[str] = Counter()
                    sequence.advance(db, ev.dev, ev.ep, ev.seq, states[key], received_ms, counts)
                    sequence.save_states(db, states, received_ms)
                    bump(db, counts)
                    result.acks = {ev.dev: states[key].contiguous}
                else:  # redelivered: ack the device where it stands
                    row = db.execute(
                        "SELECT contiguous FROM devices WHERE dev=?", (ev.dev,)
                    ).fetchone()
                    result.acks = {ev.dev: row[0]} if row else {}
            return result
        except sqlite3.OperationalError:
            raise  # the disk, not the event: the caller retries
        except Exception:  # the seq itself is what SQLite refuses: keep the bytes, no seq
            result = BatchResult()
            with self._tx() as db:
                self._quarantine_row(db, ev, reason, received_ms, None, result)
            return result

    @staticmethod
    def _quarantine_row(
        db: sqlite3.Connection,
        ev: Accepted,
        reason: str,
        received_ms: int,
        seq: int | None,
        result: BatchResult,
    ) -> None:
        cur = db.execute(
            "INSERT OR IGNORE INTO quarantine (received_ms, eid, dev, seq, reason, raw) "
            "VALUES (?,?,?,?,?,?)",
            (received_ms, bytes(ev.eid), str(ev.dev)[:64], seq, reason[:200], bytes(ev.raw)),
        )
        result.quarantined = cur.rowcount
        result.duplicates = 1 - cur.rowcount
        bump(db, {"quarantined": cur.rowcount, "quarantine_duplicate": 1 - cur.rowcount})

    def bump(self, counts: Mapping[str, int]) -> None:
        with self._tx() as db:
            bump(db, counts)

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
            bump(db, {"forwarded": n})
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
            bump(db, counts)
        return sum(counts.values())

    # --- gateway's own records -------------------------------------------------------------

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
        """doc4 (last ID characters) is personal: it stays in this file, never forwarded."""
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
