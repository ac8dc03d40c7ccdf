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
"""

import datetime as dt
import json
import logging
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from central.store import COLUMNS, DAY_MS, EventRow, Store, StoreUnavailable, day_of

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
_PARTITION_NAME = re.compile(r"^events_(\d{8})$")
_DURABLE = (
    "SELECT current_setting('synchronous_standby_names') <> '' AS wanted, EXISTS (SELECT 1 "
    "FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum') AND state = 'streaming') "
    "AS confirmed"
)
_REPLICATED = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum') "
    "AND flush_lsn >= %s::pg_lsn) AS done"
)
# connection lost (failover, kill -9), server shutting down or starting, statement cancelled,
# or a leader demoted under us (read-only): try again on whatever is the leader now
_FAILOVER_ERRORS = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)
_T = TypeVar("_T")
_LOCK_PARTITIONS = 0x63686F74  # "chot": advisory lock id for partition DDL and migrations


def partition_name(day: int) -> str:
    return "events_" + day_date(day).strftime("%Y%m%d")


def day_date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


class _Pool:
    """Connections to one DSN (a multi-host one finds the leader or a standby by itself)."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[psycopg.Connection] = []
        self._guard = threading.Lock()
        # connections whose commit stopped waiting for the synchronous standby (see below)
        self.unconfirmed: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, row_factory=dict_row)

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            # "canceling wait for synchronous replication ...": committed locally only
            if "synchronous replication" in (diag.message_primary or ""):
                self.unconfirmed.add(conn)

        conn.add_notice_handler(on_notice)
        with self._guard:
            self._all.append(conn)
        return conn

    @contextmanager
    def conn(self, commit_timeout_s: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection; the transaction commits on success, rolls back on error.
        With commit_timeout_s, a commit still waiting for the synchronous standby after that
        long is cancelled (it stays committed locally; the caller must not confirm it)."""
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            watchdog: threading.Timer | None = None
            try:
                with conn.transaction():
                    yield conn
                    if commit_timeout_s is not None:
                        watchdog = threading.Timer(commit_timeout_s, conn.cancel_safe)
                        watchdog.daemon = True
                        watchdog.start()
            except BaseException:
                self._release(conn, watchdog)
                raise
            self._release(conn, watchdog)

    def _release(self, conn: psycopg.Connection, watchdog: threading.Timer | None) -> None:
        if watchdog is not None:
            watchdog.cancel()
            watchdog.join()
        if conn.closed or conn.broken:
            self._forget(conn)
        else:
            self._idle.put(conn)

    def _forget(self, conn: psycopg.Connection) -> None:
        with self._guard:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def flush(self) -> None:
        """Drop idle connections: after a failover they lead to the old leader."""
        while True:
            try:
                self._forget(self._idle.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()


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
        self._write = _Pool(url, pool_size)
        read_url = read_url or _read_url(url)
        self._read = self._write if read_url == url else _Pool(read_url, pool_size)
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
        pool: "_Pool | None" = None,
        wait_s: float | None = None,
    ) -> _T:
        """Run `work`, again on a fresh connection while the cluster fails over (for
        `failover_wait_s`, or `wait_s`)."""
        pool = pool or self._write
        deadline = time.monotonic() + (self.failover_wait_s if wait_s is None else wait_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return work()
            except (*_FAILOVER_ERRORS, StoreUnavailable) as exc:
                if not isinstance(exc, StoreUnavailable):
                    pool.flush()
                    self._partitions.clear()  # the new leader may lack an unconfirmed one
                if time.monotonic() + 0.5 > deadline:
                    log.warning("%s: giving up after %d attempts: %s", what, attempt, exc)
                    if isinstance(exc, StoreUnavailable):
                        raise
                    raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
                log.warning("%s: attempt %d failed (%s); retrying", what, attempt, exc)
                time.sleep(0.5)

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
                self._await_replicated()
            return inserted

        return self._retrying(attempt, f"insert of {len(rows)} events")

    def _insert(self, rows: Sequence[EventRow]) -> set[bytes]:
        with self._write.conn(self.commit_timeout_s) as conn:
            self._check_durable(conn)
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
        if conn in self._write.unconfirmed:
            self._write.unconfirmed.discard(conn)
            raise StoreUnavailable(
                f"no synchronous standby confirmed the commit within {self.commit_timeout_s} s"
            )
        if self.on_commit is not None:
            self.on_commit(conn.info.port, len(rows))
        return inserted

    @staticmethod
    def _check_durable(conn: psycopg.Connection) -> None:
        """Refuse before writing when synchronous replication is asked for but no standby
        streams as synchronous (Patroni's strict mode with the last standby gone): the
        commit would hang, and a degraded single-copy commit is not an acknowledgement."""
        row = conn.execute(_DURABLE).fetchone()
        if row["wanted"] and not row["confirmed"]:
            raise StoreUnavailable("no synchronous standby is streaming")

    def _await_replicated(self) -> None:
        with self._write.conn() as conn:
            row = conn.execute(
                "SELECT pg_current_wal_lsn()::text AS lsn, "
                "current_setting('synchronous_standby_names') <> '' AS wanted"
            ).fetchone()
        if not row["wanted"]:
            return
        deadline = time.monotonic() + self.commit_timeout_s
        while time.monotonic() < deadline:
            with self._write.conn() as conn:
                done = conn.execute(_REPLICATED, (row["lsn"],)).fetchone()["done"]
            if done:
                return
            time.sleep(0.01)
        raise StoreUnavailable("no synchronous standby confirmed the stored duplicates")

    def _ensure_partitions(self, days: set[int]) -> None:
        """Create missing day partitions in one transaction (all of them or none: a failover
        in the middle leaves no half-made state, and the next attempt starts over)."""
        missing = days - self._partitions
        if not missing:
            return
        with self._write.conn(self.commit_timeout_s) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_PARTITIONS,))
            for day in sorted(missing):
                name = partition_name(day)
                exists = conn.execute("SELECT to_regclass(%s) AS r", (name,)).fetchone()
                if exists["r"] is None:
                    conn.execute(
                        f"CREATE TABLE {name} PARTITION OF events "
                        f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
                    )
                    log.info("created partition %s", name)
        if conn in self._write.unconfirmed:
            self._write.unconfirmed.discard(conn)
            raise StoreUnavailable("partition creation not confirmed by a standby")
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
            if conn in self._write.unconfirmed:
                self._write.unconfirmed.discard(conn)
                raise StoreUnavailable("no synchronous standby confirmed the commit in time")
            return count

        return self._retrying(run, "statement", wait_s=wait_s)

    def delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        """DROP whole day partitions older than the cutoff: instant, no vacuum debt. One
        transaction: a failover in the middle drops all of those days or none."""
        return self._retrying(lambda: self._delete_days_before(cutoff_day), "retention")

    def _delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        with self._write.conn(self.commit_timeout_s) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_PARTITIONS,))
            names = conn.execute(
                "SELECT c.relname AS name FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
            ).fetchall()
            days, events = [], 0
            for row in names:
                match = _PARTITION_NAME.match(row["name"])
                if not match:
                    continue
                day = (dt.datetime.strptime(match[1], "%Y%m%d").date() - dt.date(1970, 1, 1)).days
                if day < cutoff_day:
                    count = conn.execute(f"SELECT count(*) AS n FROM {row['name']}").fetchone()
                    events += count["n"]
                    conn.execute(f"DROP TABLE {row['name']}")
                    days.append(day)
            conn.execute("DELETE FROM event_ids WHERE t < %s", (cutoff_day * DAY_MS,))
        self._partitions -= set(days)
        return {"days": sorted(days), "events": events}

    # --- migrations -----------------------------------------------------------------------

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        with self._write._slots:
            conn = psycopg.connect(self.url, autocommit=True)
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_PARTITIONS + 1,))
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


def _read_url(url: str) -> str:
    """The reading twin of a leader-finding URL: same hosts, prefer a standby."""
    return url.replace("target_session_attrs=read-write", "target_session_attrs=prefer-standby")


def _as_is(text: str) -> str:
    return text


def _pg_sql(sql: str) -> str:
    """`:name` (shared query style) -> `%(name)s` (psycopg)."""
    return _PARAM.sub(r"%(\1)s", sql)


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """jsonb comes back as objects; give JSON text like SQLite so queries.py sees one shape."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
