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
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from central.store import COLUMNS, DAY_MS, EventRow, Store, day_of

log = logging.getLogger(__name__)

_COLS = ", ".join(COLUMNS)
_STAGING = "CREATE TEMP TABLE staging (LIKE events) ON COMMIT DELETE ROWS"
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
]
_EXTRA = COLUMNS.index("extra")
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_PARTITION_NAME = re.compile(r"^events_(\d{8})$")
_LOCK_PARTITIONS = 0x63686F74  # "chot": advisory lock id for partition DDL and migrations


def partition_name(day: int) -> str:
    return "events_" + day_date(day).strftime("%Y%m%d")


def day_date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self._pool: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: list[psycopg.Connection] = []
        self._partitions: set[int] = set()
        self._staged: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        self._guard = threading.Lock()

    # --- connections ----------------------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the transaction commits on success, rolls back on error."""
        with self._slots:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(self.url, row_factory=dict_row)
                with self._guard:
                    self._all.append(conn)
            try:
                with conn.transaction():
                    yield conn
            except BaseException:
                if conn.closed or conn.broken:
                    with self._guard:
                        self._all.remove(conn)
                    raise
                self._pool.put(conn)
                raise
            self._pool.put(conn)

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()

    # --- events ---------------------------------------------------------------------------

    def insert_events(self, rows: Sequence[EventRow]) -> set[bytes]:
        if not rows:
            return set()
        self._ensure_partitions({day_of(r.t) for r in rows})
        ordered = sorted(rows, key=lambda r: r.eid)
        for attempt in range(3):
            try:
                return self._insert(ordered)
            except psycopg.errors.DeadlockDetected:
                log.warning("deadlock inserting %d events, retry %d", len(rows), attempt + 1)
        return self._insert(ordered)

    def _insert(self, rows: Sequence[EventRow]) -> set[bytes]:
        with self._conn() as conn:
            if conn not in self._staged:
                conn.execute(_STAGING)  # lives as long as the connection
                self._staged.add(conn)
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
                return {r["eid"] for r in cur.fetchall()}

    def _ensure_partitions(self, days: set[int]) -> None:
        missing = days - self._partitions
        if not missing:
            return
        with self._conn() as conn:
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
        self._partitions |= missing

    # --- queries --------------------------------------------------------------------------

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute(_pg_sql(sql), dict(params or {})).fetchall()
        return [_plain(r) for r in rows]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        with self._conn() as conn:
            return conn.execute(_pg_sql(sql), dict(params or {})).rowcount

    def delete_days_before(self, cutoff_day: int) -> dict[str, Any]:
        """DROP whole day partitions older than the cutoff: instant, no vacuum debt."""
        with self._conn() as conn:
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
        with self._slots:
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


def _as_is(text: str) -> str:
    return text


def _pg_sql(sql: str) -> str:
    """`:name` (shared query style) -> `%(name)s` (psycopg)."""
    return _PARAM.sub(r"%(\1)s", sql)


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """jsonb comes back as objects; give JSON text like SQLite so queries.py sees one shape."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
