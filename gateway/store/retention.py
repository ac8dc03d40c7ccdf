"""Keeping the store within its bounds: retention, size, disk space, and their alerts.

Forwarded (and centrally rejected) events are pruned; pending events never are: an event the
central store has not confirmed exists nowhere else once the device dropped it. Sequence gaps
older than `gap_expiry_ms` are given up here (counted as never arrived).
"""

import logging
import shutil
import sqlite3
from typing import Any

from gateway.store import sequence
from gateway.store.connection import StoreBase, now_ms

log = logging.getLogger(__name__)

REJECTS_KEPT = 10_000  # refused inputs kept for the rejects view (the counters keep all)
QUARANTINE_KEPT = 10_000  # events the store refused, kept with their bytes (counters keep all)
NEAR_FULL = 0.9  # share of max_bytes where pruning of confirmed events starts


class StoreRetention(StoreBase):
    gap_expiry_ms: int = 24 * 3_600_000  # set by Store from [store] gap_expiry_hours

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
                "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                (QUARANTINE_KEPT,),
            )
            sequence.expire(db, now - self.gap_expiry_ms)
        while self.size_bytes() > NEAR_FULL * self.max_bytes:
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
        if size > NEAR_FULL * self.max_bytes:
            alerts.append("store_full" if size > self.max_bytes else "store_near_full")
        # events the central store refused stay here as `rejected` (never resent): someone
        # should look at why (/metrics: chot_gateway_central_rejects_total by reason)
        held = "SELECT 1 FROM events WHERE state='rejected' LIMIT 1"
        if self._db().execute(held).fetchone():
            alerts.append("central_rejected_events")
        return alerts
