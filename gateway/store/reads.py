"""Reads for the operators' status page, its JSON API and metrics, and `chot gateway status`.

Pseudonymous only: event rows without their signed bytes, device health, counters. The one
exception, `manual_entries(include_doc4=True)`, is for the manual entries page alone. What
these facts mean for an operator (alerts, banners) is decided in gateway/web/.
"""

import json
from collections.abc import Mapping
from typing import Any

from gateway.store import sequence
from gateway.store.connection import StoreBase, now_ms
from gateway.store.records import Accepted, DeviceInfo, StoredEvent


def _heartbeat(text: str | None) -> dict[str, Any] | None:
    """The stored heartbeat, or None when unreadable (a store written before heartbeats were
    checked kept them cut at 2,000 characters: invalid JSON must not break a page)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class StoreReads(StoreBase):
    """Plain SELECTs on the calling thread's connection (WAL: they never block ingest)."""

    def devices(self) -> list[DeviceInfo]:
        """Every scanner the gateway heard of (not the gateway itself: its own events keep a
        sequence row, but it is no scanner), with its last status and heartbeat. One row per
        device: gap figures are kept on the device row, never counted from the ranges."""
        out = []
        for (
            dev,
            contiguous,
            highest,
            lane,
            last_ms,
            status,
            hb,
            hb_ms,
            ranges,
            missing,
            never_arrived,
        ) in self._db().execute(
            "SELECT dev, contiguous, highest, lane, last_event_ms, status, heartbeat, "
            "heartbeat_ms, gap_ranges, gap_missing, never_arrived FROM devices "
            "WHERE dev IS NOT ? ORDER BY dev",
            (self.own_id,),
        ):
            out.append(
                DeviceInfo(
                    dev=dev,
                    lane=lane,
                    online=status == "online",
                    status=status,
                    last_seen_ms=max((t for t in (last_ms, hb_ms) if t is not None), default=None),
                    contiguous=contiguous,
                    highest=highest,
                    open_gaps=ranges,
                    heartbeat=_heartbeat(hb),
                    heartbeat_ms=hb_ms,
                    missing=missing,
                    never_arrived=never_arrived,
                )
            )
        return out

    def recent_decisions(self, after_id: int = 0, limit: int = 100) -> list[StoredEvent]:
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
        return [StoredEvent(r[0], r[1].hex(), *r[2:]) for r in rows]

    def accepted_passes_since(self, since_ms: int) -> list[Accepted]:
        """Scans let through (verdict pass) at or after `since_ms` (device time), oldest first,
        with their signed bytes: the recent-pass set is rebuilt from them at start."""
        rows = (
            self._db()
            .execute(
                "SELECT eid, dev, seq, typ, t_ms, raw, verdict, reason, lane, kind, clock FROM events "
                "WHERE typ = 'scan' AND verdict = 'pass' AND t_ms >= ? ORDER BY t_ms, id",
                (since_ms,),
            )
            .fetchall()
        )
        return [Accepted(*r) for r in rows]

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

    def central_reject_counts(self) -> dict[str, int]:
        """{reason: count} of events the central store refused (kept here, never resent)."""
        return {
            name.removeprefix("central_rejected."): value
            for name, value in self.counters().items()
            if name.startswith("central_rejected.") and value
        }

    def _newest(self, table: str, columns: str, limit: int) -> list[dict[str, Any]]:
        """The `limit` newest rows of an append-only log table (by id), newest first, each
        keyed by its column name (or SQL alias)."""
        cursor = self._db().execute(
            f"SELECT {columns} FROM {table} ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def recent_rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._newest(
            "rejects", "id, received_ms, topic_dev AS device, eid, reason, detail", limit
        )
        for row in rows:
            row["eid"] = row["eid"].hex() if row["eid"] else None
        return rows

    def counters(self) -> dict[str, int]:
        """All counters: stored, duplicate, forwarded, reject.<reason>,
        central_rejected.<reason>, quarantined, gaps_opened, gaps_closed, gaps_expired,
        seqs_never_arrived, dropped.<leaf>, ..."""
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

    def open_gaps(self, limit: int = 100) -> list[dict[str, Any]]:
        """The first `limit` ranges of seqs not received yet, by device and seq: {device, lo,
        hi, missing: [seq...] (first 50), missing_count, opened_ms}. Bounded work: the ranges
        are exact, no event is read."""
        rows = (
            self._db()
            .execute(
                "SELECT dev, ep, lo, hi, opened_ms FROM seq_gaps ORDER BY dev, ep, lo LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {
                "device": dev,
                "ep": ep,  # the unit's outbox epoch the range belongs to
                "lo": lo,
                "hi": hi,
                "missing": list(range(lo, min(hi, lo + 49) + 1)),
                "missing_count": hi - lo + 1,
                "opened_ms": opened,
            }
            for dev, ep, lo, hi, opened in rows
        ]

    def gap_totals(self) -> dict[str, int]:
        """{open_ranges, missing, never_arrived} over all scanners, from the device rows."""
        ranges, missing, never = sequence.gap_totals(self._db(), self.own_id)
        return {"open_ranges": ranges, "missing": missing, "never_arrived": never}

    def quarantine_count(self) -> int:
        return self.counters().get("quarantined", 0)

    def recent_quarantine(self, limit: int = 50) -> list[dict[str, Any]]:
        """Events set aside because the store refused them (without their signed bytes)."""
        rows = self._newest("quarantine", "id, received_ms, eid, dev AS device, seq, reason", limit)
        for row in rows:
            row["eid"] = row["eid"].hex()
        return rows

    def manual_entries(self, limit: int = 50, *, include_doc4: bool = False) -> list[dict]:
        """Paper declarations entered here, newest first. doc4 only when the caller (an
        operator screen) explicitly asks: it is personal data."""
        rows = (
            self._db()
            .execute(
                "SELECT m.eid, m.t_ms, m.lane, m.category, m.operator, m.doc4, e.verdict, "
                "e.reason FROM manual_entries m LEFT JOIN events e ON e.eid = m.eid "
                "ORDER BY m.t_ms DESC LIMIT ?",
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
                # admitted (pass) or turned away (fail, reason = why), from the signed event
                "outcome": "turned_away" if r[6] == "fail" else "admitted",
                "reason": r[7],
                **({"doc4": r[5]} if include_doc4 else {}),
            }
            for r in rows
        ]

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._newest("audit", "id, t_ms, actor, action, detail", limit)

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
