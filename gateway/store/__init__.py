"""The gateway's durable store: one SQLite file (WAL) holding every accepted event until the
central store confirms it, plus what the operators' status page reads.

Follow one scan: ingest hands the verified event (`records.Accepted`) to
`Store.commit_batch` (`writes.py`), which inserts it, moves the device's ack point
(`sequence.py`) and commits the batch in ONE transaction before anything is acknowledged; the
forwarder sends it on (`pending_batch`, `mark_forwarded`); the status page and the CLI read it
back (`reads.py`); `retention.py` prunes it once the central store has it. The tables are in
`schema.sql` (`upgrade.py` brings an older file up to it), the connections in
`connection.py`. An event the store refuses to commit is set aside by `Store.quarantine`.

Personal data: only `manual_entries.doc4` (typed by an operator for a paper declaration) is
personal, and it never leaves this file. Events hold the pseudonymous signed bytes only.
"""

from pathlib import Path
from typing import Any

from gateway.store.connection import now_ms
from gateway.store.reads import StoreReads
from gateway.store.records import (
    Accepted,
    BatchResult,
    DeviceInfo,
    PendingEvent,
    Rejected,
    StoredEvent,
)
from gateway.store.retention import StoreRetention
from gateway.store.upgrade import upgrade
from gateway.store.writes import StoreWrites


class Store(StoreWrites, StoreRetention, StoreReads):
    """Thread-safe facade over one SQLite file; every write is its own short transaction.

    Open with `Store(path, max_bytes=, disk_alert_free_bytes=, retention_days=, own_id=,
    gap_expiry_hours=)`; a file written by an older gateway is upgraded in place (upgrade.py).
    """

    def __init__(self, path: Path, *, gap_expiry_hours: float = 24, **options: Any) -> None:
        super().__init__(path, **options)
        self.gap_expiry_ms = int(gap_expiry_hours * 3_600_000)
        upgrade(self._db())


__all__ = [
    "Accepted",
    "BatchResult",
    "DeviceInfo",
    "PendingEvent",
    "Rejected",
    "Store",
    "StoredEvent",
    "now_ms",
]
