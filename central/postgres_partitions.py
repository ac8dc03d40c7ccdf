"""Day partitions of `events` on PostgreSQL: `events_YYYYMMDD` (UTC day of event time), made
on demand and dropped whole by retention, both under one advisory lock."""

import datetime as dt
import logging
import re

from central.postgres_failover import ConnectionPool
from central.store import DAY_MS

log = logging.getLogger(__name__)

LOCK_PARTITIONS = 0x63686F74  # "chot": advisory lock id for partition DDL and migrations
_PARTITION_NAME = re.compile(r"^events_(\d{8})$")


def partition_name(day: int) -> str:
    return "events_" + day_date(day).strftime("%Y%m%d")


def day_date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


def create_partitions(pool: ConnectionPool, days: set[int], commit_timeout_s: float) -> None:
    """Create the partitions of `days` that do not exist yet, in one transaction (all of them
    or none: a failover in the middle leaves no half-made state, and the next attempt starts
    over). StoreUnavailable when no synchronous standby confirmed it."""
    with pool.conn(commit_timeout_s) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
        for day in sorted(days):
            name = partition_name(day)
            exists = conn.execute("SELECT to_regclass(%s) AS r", (name,)).fetchone()
            if exists["r"] is None:
                conn.execute(
                    f"CREATE TABLE {name} PARTITION OF events "
                    f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
                )
                log.info("created partition %s", name)
    pool.raise_if_unconfirmed(conn, "partition creation not confirmed by a standby")


def drop_days_before(
    pool: ConnectionPool, cutoff_day: int, commit_timeout_s: float
) -> tuple[list[int], int]:
    """DROP whole day partitions older than the cutoff, in one transaction: the days dropped
    (sorted) and how many events they held."""
    with pool.conn(commit_timeout_s) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_PARTITIONS,))
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
    return sorted(days), events
