"""What every storage backend offers (`central.backends.open_store(url)` picks one).

A URL chooses the backend: `sqlite:///path/central.db` (embedded default, a demo needs no
server) or `postgresql://...` (the real store, partitioned by day). Queries are written once,
with `:name` parameters, and run on both (see queries.py).
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

DAY_MS = 86_400_000

# Column order of the events table in both dialects (the staging COPY relies on it).
COLUMNS = (
    "eid",
    "typ",
    "dev",
    "site",
    "lane",
    "seq",
    "t",
    "received_at",
    "gateway",
    "verdict",
    "reason",
    "ref",
    "sub",
    "kid",
    "kind",
    "tlv",
    "clock",
    "dec_us",
    "ver_us",
    "extra",
    "raw",
    "ep",  # added by migration 0005, so last in both dialects
)


@dataclass(frozen=True)
class EventRow:
    """One verified event as stored. Only pseudonyms and pass references: no personal data."""

    eid: bytes
    typ: str
    dev: str
    site: str
    lane: str | None
    seq: int
    t: int  # event time, Unix ms (device clock; see `clock`)
    received_at: int  # central time, Unix ms
    gateway: str  # which gateway delivered it
    verdict: str | None
    reason: str | None
    ref: bytes | None
    sub: bytes | None
    kid: bytes | None
    kind: str | None
    tlv: int | None
    clock: str
    dec_us: int | None
    ver_us: int | None
    extra: str | None  # JSON text (manual and load events)
    raw: bytes  # the signed COSE bytes, kept for audit
    ep: int | None = None  # the unit's outbox epoch (seq counts within it); None: before epochs

    def values(self) -> tuple:
        return _values(self)  # attrgetter: dataclasses.astuple deep-copies, 10x slower


_values = attrgetter(*COLUMNS)


class StoreUnavailable(Exception):
    """The store cannot take this write durably now (no leader, or no synchronous standby
    to confirm it): nothing was confirmed, the caller retries later (HTTP 503)."""


def day_of(t_ms: int) -> int:
    """Day number (UTC) of a Unix-ms time: the partition key."""
    return t_ms // DAY_MS


class Store(ABC):
    """A place to keep events. Implementations are safe to share between threads."""

    dialect: str
    url: str
    audit_trail: Any = None  # central/audit.py's AuditTrail, made at the first audited query

    @abstractmethod
    def insert_events(self, rows: Sequence[EventRow]) -> set[bytes]:
        """Store rows whose eid is new; return the eids actually inserted (idempotent)."""

    @abstractmethod
    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a `:name`-parameter query, return rows as dicts."""

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement in its own transaction; return the row count."""

    def execute_within(self, sql: str, params: Mapping[str, Any] | None, wait_s: float) -> int:
        """`execute`, giving up with StoreUnavailable after about `wait_s` without a server
        that takes the write: for a write that has somewhere else to go (central/audit.py's
        spool). A local database has no leader to wait for."""
        return self.execute(sql, params)

    @abstractmethod
    def delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        """Retention: remove every event whose UTC day is < cutoff_day; say what went."""

    # --- migrations (used by migrate.py) ----------------------------------------------------

    @abstractmethod
    def migration_lock(self) -> AbstractContextManager[None]:
        """Hold a lock so two processes never migrate at once."""

    @abstractmethod
    def applied_versions(self) -> set[int]: ...

    @abstractmethod
    def apply_migration(self, version: int, name: str, sql: str) -> None:
        """Run one migration script and record it, in one transaction."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
