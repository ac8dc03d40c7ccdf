"""Staying correct through a Patroni failover: pooled connections that find the leader (or a
standby) through a multi-host DSN, retrying on the new leader, and synchronous durability
(a write counts only once a synchronous standby has it too)."""

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg.rows import dict_row

from central.store import StoreUnavailable

log = logging.getLogger(__name__)

# connection lost (failover, kill -9), server shutting down or starting, statement cancelled,
# or a leader demoted under us (read-only): try again on whatever is the leader now
FAILOVER_ERRORS = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)
_DURABLE = (
    "SELECT current_setting('synchronous_standby_names') <> '' AS wanted, EXISTS (SELECT 1 "
    "FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum') AND state = 'streaming') "
    "AS confirmed"
)
_REPLICATED = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum') "
    "AND flush_lsn >= %s::pg_lsn) AS done"
)
_T = TypeVar("_T")


class ConnectionPool:
    """Connections to one DSN (a multi-host one finds the leader or a standby by itself)."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[psycopg.Connection] = []
        self._guard = threading.Lock()
        # connections whose commit stopped waiting for the synchronous standby (see below)
        self.unconfirmed: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()

    @property
    def slots(self) -> threading.BoundedSemaphore:
        """One slot per connection the pool may hold (take one to open a connection aside)."""
        return self._slots

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

    def raise_if_unconfirmed(self, conn: psycopg.Connection, message: str) -> None:
        """StoreUnavailable when the last commit on `conn` stopped waiting for the standby."""
        if conn in self.unconfirmed:
            self.unconfirmed.discard(conn)
            raise StoreUnavailable(message)

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


def reading_url(url: str) -> str:
    """The reading twin of a leader-finding URL: same hosts, prefer a standby."""
    return url.replace("target_session_attrs=read-write", "target_session_attrs=prefer-standby")


def retry_through_failover(
    work: Callable[[], _T],
    what: str,
    pool: ConnectionPool,
    wait_s: float,
    on_reconnect: Callable[[], None],
) -> _T:
    """Run `work`, again on a fresh connection while the cluster fails over, for `wait_s`.
    `on_reconnect` forgets what the old leader had (called after a lost connection)."""
    deadline = time.monotonic() + wait_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return work()
        except (*FAILOVER_ERRORS, StoreUnavailable) as exc:
            if not isinstance(exc, StoreUnavailable):
                pool.flush()
                on_reconnect()
            if time.monotonic() + 0.5 > deadline:
                log.warning("%s: giving up after %d attempts: %s", what, attempt, exc)
                if isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
            log.warning("%s: attempt %d failed (%s); retrying", what, attempt, exc)
            time.sleep(0.5)


def check_durable(conn: psycopg.Connection) -> None:
    """Refuse before writing when synchronous replication is asked for but no standby
    streams as synchronous (Patroni's strict mode with the last standby gone): the
    commit would hang, and a degraded single-copy commit is not an acknowledgement."""
    row = conn.execute(_DURABLE).fetchone()
    if row["wanted"] and not row["confirmed"]:
        raise StoreUnavailable("no synchronous standby is streaming")


def await_replicated(pool: ConnectionPool, timeout_s: float) -> None:
    """Wait until a synchronous standby has flushed everything the leader has now (rows
    committed earlier, perhaps by a commit whose wait for the standby was cancelled)."""
    with pool.conn() as conn:
        row = conn.execute(
            "SELECT pg_current_wal_lsn()::text AS lsn, "
            "current_setting('synchronous_standby_names') <> '' AS wanted"
        ).fetchone()
    if not row["wanted"]:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with pool.conn() as conn:
            done = conn.execute(_REPLICATED, (row["lsn"],)).fetchone()["done"]
        if done:
            return
        time.sleep(0.01)
    raise StoreUnavailable("no synchronous standby confirmed the stored duplicates")
