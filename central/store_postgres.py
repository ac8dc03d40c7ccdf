"""PostgreSQL backend (psycopg 3): the real store.

- `events` is range-partitioned by UTC day of event time; partitions `events_YYYYMMDD` are
  created on demand, under an advisory lock, the first time a day is seen.
- A unique key on a partitioned table must include the partition key, so `UNIQUE (eid)` is
  impossible there. Idempotency lives in `event_ids (eid PRIMARY KEY, t)`: one small index,
  checked before the row reaches its partition. (The alternative, `UNIQUE (eid, t)`, would let
  a forged or re-timed copy of an eid through, and makes lookups by eid scan every partition.)
- Batches are COPYed into a per-connection temp staging table, then one statement inserts the
  new eids into `event_ids` (ON CONFLICT DO NOTHING) and only those rows into `events`. Rows
  are sorted by eid so concurrent batches lock keys in the same order (no deadlocks).
- Pooled connections, leader-finding, retry through a failover and the synchronous-standby
  checks are in postgres_failover.py; making and dropping day partitions in
  postgres_partitions.py.
"""

import json
import logging
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from central.postgres_failover import (
    ConnectionPool,
    await_replicated,
    check_durable,
    reading_url,
    retry_through_failover,
)
from central.postgres_partitions import (
    LOCK_PARTITIONS,
    create_partitions,
    drop_days_before,
    partition_name,
)
from central.store import COLUMNS, EventRow, Store, day_of

__all__ = ["PostgresStore", "partition_name"]  # partition_name: kept importable from here

log = logging.getLogger(__name__)

_COLS = ", ".join(COLUMNS)
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS staging (LIKE events) ON COMMIT DELETE ROWS"
_MOVE = (
    "WITH new AS (INSERT INTO event_ids (eid, t) SELECT eid, t FROM staging "
    "ON CONFLICT (eid) DO NOTHING RETURNING eid) "
    f"INSERT INTO events ({_COLS}) SELECT {', '.join('s.' + c for c in COLUMNS)} "
    "FROM staging s JOIN new ON new.eid = s.eid RETURNING eid"
)
# PostgreSQL types of COLUMNS, in order, for the binary COPY
_COPY_TYPES = [
    "bytea",
    "text",
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "int8",
    "text",
    "text",
    "text",
    "bytea",
    "bytea",
    "bytea",
    "text",
    "int8",
    "text",
    "int4",
    "int4",
    "jsonb",
    "bytea",
    "int8",
]
_EXTRA = COLUMNS.index("extra")
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_T = TypeVar("_T")


class PostgresStore(Store):
    """One PostgreSQL server, or a Patroni cluster through a multi-host DSN.

    With `target_session_attrs=read-write` in the URL, writes find the leader and reads
    (`fetch`: tracing, reports) use the same hosts with `prefer-standby`, so they keep
    answering from a standby while the leader is down. A write that loses its connection
    (failover) is retried on the new leader until `failover_wait_s`; eids make that safe.
    When the server runs synchronous replication (`synchronous_standby_names` set, as
    Patroni's synchronous_mode does), a batch is confirmed only once a synchronous standby
    has it too; otherwise StoreUnavailable (HTTP 503) and the gateway retries.
    """

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        pool_size: int = 8,
        *,
        read_url: str | None = None,
        failover_wait_s: float = 15.0,
        commit_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.failover_wait_s = failover_wait_s
        self.commit_timeout_s = commit_timeout_s
        self._write = ConnectionPool(url, pool_size)
        read_url = read_url or reading_url(url)
        self._read = self._write if read_url == url else ConnectionPool(read_url, pool_size)
        self._partitions: set[int] = set()
        self._staged: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        # called with (server port, events) after each confirmed batch: failover timing
        self.on_commit: Callable[[int, int], None] | None = None

    # --- connections ----------------------------------------------------------------------

    def _conn(self) -> AbstractContextManager[psycopg.Connection]:
        return self._write.conn()

    def _retrying(
        self,
        work: Callable[[], _T],
        what: str,
        pool: ConnectionPool | None = None,
        wait_s: float | None = None,
    ) -> _T:
        """Run `work`, again on a fresh connection while the cluster fails over (for
        `failover_wait_s`, or `wait_s`)."""

        def forget_partitions() -> None:
            self._partitions.clear()  # the new leader may lack an unconfirmed one

        wait_s = self.failover_wait_s if wait_s is None else wait_s
        return retry_through_failover(work, what, pool or self._write, wait_s, forget_partitions)

    def close(self) -> None:
        self._write.close()
        if self._read is not self._write:
            self._read.close()

    # --- events ---------------------------------------------------------------------------

    def insert_events(self, rows: Sequence[EventRow]) -> set[bytes]:
        if not rows:
            return set()
        days = {day_of(r.t) for r in rows}
        ordered = sorted(rows, key=lambda r: r.eid)

        def attempt() -> set[bytes]:
            self._ensure_partitions(days)
            for retry in range(3):
                try:
                    inserted = self._insert(ordered)
                    break
                except psycopg.errors.DeadlockDetected:
                    log.warning("deadlock inserting %d events, retry %d", len(rows), retry + 1)
            else:
                inserted = self._insert(ordered)
            if len(inserted) < len(ordered):
                # duplicates were committed by an earlier transaction, perhaps one whose
                # wait for the standby was cancelled: confirm them only once replicated
                await_replicated(self._write, self.commit_timeout_s)
            return inserted

        return self._retrying(attempt, f"insert of {len(rows)} events")

    def _insert(self, rows: Sequence[EventRow]) -> set[bytes]:
        with self._write.conn(self.commit_timeout_s) as conn:
            check_durable(conn)
            if conn not in self._staged:
                conn.execute(_STAGING)  # lives as long as the connection
            with conn.cursor() as cur:
                # binary COPY: no text escaping of the bytea columns on either side
                with cur.copy(f"COPY staging ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        values = row.values()
                        if values[_EXTRA] is not None:  # already JSON text: send it as is
                            values = (
                                *values[:_EXTRA],
                                Jsonb(values[_EXTRA], dumps=_as_is),
                                *values[_EXTRA + 1 :],
                            )
                        copy.write_row(values)
                cur.execute(_MOVE)
                inserted = {r["eid"] for r in cur.fetchall()}
        # only once committed: a rolled-back transaction (a row the database refused) takes
        # the new staging table with it, and the next batch on this connection needs it again
        self._staged.add(conn)
        self._write.raise_if_unconfirmed(
            conn, f"no synchronous standby confirmed the commit within {self.commit_timeout_s} s"
        )
        if self.on_commit is not None:
            self.on_commit(conn.info.port, len(rows))
        return inserted

    def _ensure_partitions(self, days: set[int]) -> None:
        """Create the missing day partitions (postgres_partitions.py), remembered once made."""
        missing = days - self._partitions
        if not missing:
            return
        create_partitions(self._write, missing, self.commit_timeout_s)
        self._partitions |= missing

    # --- queries --------------------------------------------------------------------------

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Reads: from a standby when the URL names several hosts (prefer-standby)."""

        def run() -> list[dict[str, Any]]:
            with self._read.conn() as conn:
                return conn.execute(_pg_sql(sql), dict(params or {})).fetchall()

        return [_plain(r) for r in self._retrying(run, "query", self._read)]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        def run() -> int:
            with self._write.conn(self.commit_timeout_s) as conn:
                return conn.execute(_pg_sql(sql), dict(params or {})).rowcount

        return self._retrying(run, "statement")

    def execute_within(self, sql: str, params: Mapping[str, Any] | None, wait_s: float) -> int:
        """A statement the leader must take within `wait_s`, synchronous standby included
        (a commit it has not confirmed by then counts as not taken: the caller keeps the
        write elsewhere, so it must be idempotent)."""

        def run() -> int:
            with self._write.conn(min(self.commit_timeout_s, wait_s)) as conn:
                count = conn.execute(_pg_sql(sql), dict(params or {})).rowcount
            self._write.raise_if_unconfirmed(
                conn, "no synchronous standby confirmed the commit in time"
            )
            return count

        return self._retrying(run, "statement", wait_s=wait_s)

    def delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        """DROP whole day partitions older than the cutoff: instant, no vacuum debt. One
        transaction: a failover in the middle drops all of those days or none."""
        return self._retrying(lambda: self._delete_days_before(cutoff_day), "retention")

    def _delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        days, events = drop_days_before(self._write, cutoff_day, self.commit_timeout_s)
        self._partitions -= set(days)
        return {"days": days, "events": events}

    # --- migrations -----------------------------------------------------------------------

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        with self._write.slots:
            conn = psycopg.connect(self.url, autocommit=True)
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_PARTITIONS + 1,))
                yield
            finally:
                conn.close()  # releases the session lock

    def applied_versions(self) -> set[int]:
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)"
            )
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
        return {r["version"] for r in rows}

    def apply_migration(self, version: int, name: str, sql: str) -> None:
        with self._conn() as conn:
            conn.execute(sql)  # no parameters: the simple protocol runs the whole script
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, %s, extract(epoch FROM now())::bigint)",
                (version, name),
            )


def _as_is(text: str) -> str:
    return text


def _pg_sql(sql: str) -> str:
    """`:name` (shared query style) -> `%(name)s` (psycopg)."""
    return _PARAM.sub(r"%(\1)s", sql)


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """jsonb comes back as objects; give JSON text like SQLite so queries.py sees one shape."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
