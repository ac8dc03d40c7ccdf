"""The access log keeps working while the cluster has no leader (issue #18).

Tracing is restricted and logged: a query is answered only once its access-log entry is
durable. The leader takes the row within `leader_wait_s` (2 s) in normal times; while a
failover runs (~20 s) nobody can, so the entry is appended to a local spool first — one JSON
line per entry, fsynced, mode 0600 — and the query answers from a standby. The next
successful audit write, or a background thread while entries wait, replays the spool into
`access_log` (each entry's `entry_id` is unique: ON CONFLICT DO NOTHING, so a replay repeated
after a crash keeps it once) and empties it only after that commit. A spool that cannot be
written refuses the query (`AuditUnavailable`): never an unaudited answer.

Where the spool lives: $CHOT_CENTRAL_AUDIT_SPOOL, else the centre's state directory
($STATE_DIRECTORY, /var/lib/chot-central under systemd), else $XDG_STATE_HOME/chot (or
~/.local/state/chot); one file per store URL, so an entry is only ever replayed into the
database it was meant for. `attach` names another (tests).
"""

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from central.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

LEADER_WAIT_S = 2.0  # a healthy leader takes a row in milliseconds; a failover takes ~20 s
REPLAY_EVERY_S = 1.0
_COLUMNS = ("entry_id", "at", "operator", "role", "via", "query", "params", "row_count")
_CHUNK = 500  # entries per replay statement (SQLite allows 32,766 parameters)


class AuditUnavailable(StoreUnavailable):
    """Neither the leader nor the local spool could take the entry: the query is refused."""


@dataclass(frozen=True)
class AccessEntry:
    """One audited query: who (name, credential role), how, what, and how many rows."""

    entry_id: str
    at: int  # Unix ms, when the query was answered
    operator: str
    role: str | None
    via: str
    query: str
    params: str  # JSON text
    row_count: int

    @classmethod
    def new(
        cls, operator: str, via: str, query: str, params: dict, rows: int, role: str | None
    ) -> "AccessEntry":
        return cls(
            entry_id=uuid.uuid4().hex,
            at=int(time.time() * 1000),
            operator=operator,
            role=role,
            via=via,
            query=query,
            params=json.dumps(params, sort_keys=True, default=str),
            row_count=rows,
        )

    def to_line(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "AccessEntry":
        data = json.loads(line)
        return cls(**{name: data[name] for name in _COLUMNS})


def insert_sql(count: int) -> str:
    """One statement for `count` entries, named :entry_id0, :at0, ...; an entry already
    there (same entry_id) is skipped."""
    rows = ", ".join("(" + ", ".join(f":{c}{i}" for c in _COLUMNS) + ")" for i in range(count))
    return (
        f"INSERT INTO access_log ({', '.join(_COLUMNS)}) VALUES {rows} "
        "ON CONFLICT (entry_id) DO NOTHING"
    )


def insert_params(entries: list[AccessEntry]) -> dict[str, Any]:
    return {f"{c}{i}": getattr(e, c) for i, e in enumerate(entries) for c in _COLUMNS}


@dataclass(frozen=True)
class SpoolSnapshot:
    entries: list[AccessEntry]
    size: int  # bytes read: the spool is emptied only if it has not grown since
    unreadable: int  # lines that do not parse (a write torn by a crash: never confirmed)


class AuditSpool:
    """Append-only JSON lines, each fsynced before the query may answer. An flock serialises
    the processes sharing it (the service, a CLI run)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: AccessEntry) -> None:
        """Durable when this returns; OSError (disk full, unwritable) otherwise, and a
        partly written line is cut off again."""
        line = entry.to_line()
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                start = os.fstat(fd).st_size
                view = memoryview(line)
                try:
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    if len(view) < len(line):  # part of the line got out
                        _cut_back(fd, start)
                    raise
            finally:
                os.close(fd)  # releases the flock
            if created:
                _fsync_dir(self.path.parent)

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:  # missing, or its folder unusable: nothing we could replay
            return False

    def read(self) -> SpoolSnapshot:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return SpoolSnapshot([], 0, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            with os.fdopen(os.dup(fd), "rb") as file:
                data = file.read()
        finally:
            os.close(fd)
        entries, unreadable = [], 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                entries.append(AccessEntry.from_line(line))
            except (ValueError, KeyError, TypeError):
                unreadable += 1
        return SpoolSnapshot(entries, len(data), unreadable)

    def empty_if_unchanged(self, size: int) -> bool:
        """Empty the spool once what was read (`size` bytes) is committed; an entry appended
        since keeps the whole file for the next replay (replaying twice is harmless)."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size != size:
                    return False
                os.ftruncate(fd, 0)
                os.fsync(fd)
                return True
            finally:
                os.close(fd)


class AuditTrail:
    """The access log of one store: the leader when it answers in time, else the spool."""

    def __init__(self, store: Store, spool: AuditSpool, leader_wait_s: float = LEADER_WAIT_S):
        self.store = store
        self.spool = spool
        self.leader_wait_s = leader_wait_s
        self._replaying = threading.Lock()
        self._replayer: threading.Thread | None = None
        self._guard = threading.Lock()
        if spool.pending():  # left by an earlier run
            self._start_replayer()

    def record(self, entry: AccessEntry) -> None:
        """Durable when this returns (access_log or the spool); AuditUnavailable otherwise."""
        try:
            self.store.execute_within(insert_sql(1), insert_params([entry]), self.leader_wait_s)
        except StoreUnavailable as exc:
            self._spool(entry, exc)
            return
        if self.spool.pending():  # the leader is back: bring the waiting entries over
            try:
                self.replay()
            except (StoreUnavailable, OSError) as exc:  # this query is audited all the same
                log.warning("access log: replay of the spool failed (%s); retrying", exc)
                self._start_replayer()

    def _spool(self, entry: AccessEntry, cause: Exception) -> None:
        try:
            self.spool.append(entry)
        except OSError as exc:
            log.error(
                "access log: %s query %s refused: no leader (%s) and spool %s unwritable: %s",
                entry.query,
                entry.entry_id,
                cause,
                self.spool.path,
                exc.strerror or exc,
            )
            raise AuditUnavailable(
                "tracing refused: the access log cannot be written (no database leader, and "
                f"the local audit spool {self.spool.path} failed: {exc.strerror or exc}); "
                "try again shortly"
            ) from exc
        log.warning(
            "access log: no leader within %.1f s (%s): %s query %s spooled to %s",
            self.leader_wait_s,
            cause,
            entry.query,
            entry.entry_id,
            self.spool.path,
        )
        self._start_replayer()

    def replay(self) -> int:
        """Move the spooled entries into access_log; return how many were read (0 also when
        another thread is replaying). StoreUnavailable when the leader cannot take them."""
        if not self._replaying.acquire(blocking=False):
            return 0
        try:
            snapshot = self.spool.read()
            if snapshot.unreadable:
                log.warning("access log: %d torn spool line(s) skipped", snapshot.unreadable)
            for start in range(0, len(snapshot.entries), _CHUNK):
                chunk = snapshot.entries[start : start + _CHUNK]
                sql, params = insert_sql(len(chunk)), insert_params(chunk)
                self.store.execute_within(sql, params, self.leader_wait_s)
            if snapshot.size and self.spool.empty_if_unchanged(snapshot.size):
                log.info("access log: %d spooled entries replayed", len(snapshot.entries))
            return len(snapshot.entries)
        finally:
            self._replaying.release()

    def _start_replayer(self) -> None:
        with self._guard:
            if self._replayer is not None and self._replayer.is_alive():
                return
            self._replayer = threading.Thread(
                target=self._replay_until_empty, name="audit-replay", daemon=True
            )
            self._replayer.start()

    def _replay_until_empty(self) -> None:
        while self.spool.pending():
            time.sleep(REPLAY_EVERY_S)
            try:
                self.replay()
            except StoreUnavailable as exc:
                log.info("access log: replay waits for a leader (%s)", exc)
            except Exception:  # never let the thread die with entries waiting unseen
                log.exception("access log: replay failed")


_trails_guard = threading.Lock()


def attach(store: Store, spool_path: Path, leader_wait_s: float = LEADER_WAIT_S) -> AuditTrail:
    """Give `store` its audit trail with this spool (replacing the default)."""
    trail = AuditTrail(store, AuditSpool(spool_path), leader_wait_s)
    with _trails_guard:
        store.audit_trail = trail
    return trail


def trail_for(store: Store) -> AuditTrail:
    """The store's trail, made with the default spool at its first audited query."""
    with _trails_guard:
        if store.audit_trail is None:
            store.audit_trail = AuditTrail(store, AuditSpool(default_spool_path(store.url)))
        return store.audit_trail


def record(
    store: Store,
    operator: str,
    via: str,
    query: str,
    params: dict,
    rows: int,
    role: str | None = None,
) -> AccessEntry:
    """Audit one query durably (see the module docstring); return the entry."""
    entry = AccessEntry.new(operator, via, query, params, rows, role)
    trail_for(store).record(entry)
    return entry


def default_spool_path(store_url: str) -> Path:
    explicit = os.environ.get("CHOT_CENTRAL_AUDIT_SPOOL")
    if explicit:
        return Path(explicit)
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        folder = Path(state)
    else:
        folder = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "chot"
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return folder / f"audit-spool.{digest}.jsonl"


def _cut_back(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        log.error("access log: could not cut a torn spool line back (it will be skipped)")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
