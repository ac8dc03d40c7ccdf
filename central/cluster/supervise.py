"""Start, watch, kill and stop the processes of a local HA cluster (etcd + Patroni nodes).

Processes run detached (their own session) so `chot central cluster up` can return; their
pids go to `<workdir>/pids.json` for `down` and `status`. Run as root, everything runs as the
system user `chot-ha` (scripts/bootstrap-ha makes it): initdb refuses root.
"""

import contextlib
import functools
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from central.cluster.layout import Layout, Node

log = logging.getLogger(__name__)

RUN_AS = "chot-ha"
PIDS_FILE = "pids.json"


class ClusterError(RuntimeError):
    """The cluster did not reach the asked state in time."""


@dataclass(frozen=True)
class Member:
    """One node as Patroni sees it (GET /cluster)."""

    name: str
    role: str  # leader | sync_standby | replica
    state: str  # running | streaming | stopped | starting ...
    timeline: int | None
    lag: int | None


class Cluster:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.workdir = layout.workdir

    @functools.cached_property
    def _user(self) -> pwd.struct_passwd | None:
        """Who runs the cluster's processes; asked only when one is started (so `status`
        and `down` work on a machine that never ran scripts/bootstrap-ha)."""
        return _run_as_user()

    # --- pids -----------------------------------------------------------------------------

    def _pids(self) -> dict[str, dict[str, int]]:
        path = self.workdir / PIDS_FILE
        return json.loads(path.read_text()) if path.exists() else {"etcd": {}, "patroni": {}}

    def _save_pid(self, kind: str, name: str, pid: int | None) -> None:
        pids = self._pids()
        if pid is None:
            pids[kind].pop(name, None)
        else:
            pids[kind][name] = pid
        (self.workdir / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")

    # --- lifecycle ------------------------------------------------------------------------

    def up(self, timeout_s: float = 120.0) -> None:
        """etcd members, then Patroni nodes; back once a leader and a sync standby serve."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.layout.save()
        self.layout.write_configs()
        self._own(self.workdir)
        for node in self.layout.nodes:
            self.start_etcd(node)
        self.wait(self._etcd_healthy, timeout_s, "etcd did not become healthy")
        for node in self.layout.nodes:
            self.start_patroni(node)
        self.wait(lambda: self.leader() is not None, timeout_s, "no leader elected")
        self._create_database()
        self.wait(self.replicated, timeout_s, "standbys did not start streaming")

    def down(self, timeout_s: float = 30.0) -> None:
        """Patroni first (it stops PostgreSQL with a fast shutdown), then etcd."""
        pids = self._pids()
        for kind in ("patroni", "etcd"):
            running = [p for p in pids[kind].values() if _alive(p)]
            for pid in running:
                _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while any(_alive(p) for p in running) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in running:
                if _alive(pid):
                    log.warning("%s pid %d ignored SIGTERM: killing it", kind, pid)
                    _signal(pid, signal.SIGKILL)
        for node in self.layout.nodes:  # a postmaster whose Patroni was killed earlier
            self._kill_postgres(node, signal.SIGTERM)
        (self.workdir / PIDS_FILE).unlink(missing_ok=True)

    def start_etcd(self, node: Node) -> int:
        return self._spawn("etcd", node, self.layout.etcd_command(node))

    def start_patroni(self, node: Node) -> int:
        path = node.dir(self.workdir) / "patroni.yml"
        return self._spawn("patroni", node, [shutil.which("patroni") or "patroni", str(path)])

    def start_node(self, node: Node, etcd: bool = False) -> None:
        """Bring a node back (after kill_node): Patroni rejoins it as a replica, with
        pg_rewind when its timeline diverged."""
        if etcd:
            self.start_etcd(node)
        self.start_patroni(node)

    def kill_node(self, node: Node, etcd: bool = False) -> None:
        """kill -9 as a machine dies: Patroni, the postmaster and every backend, optionally
        the node's etcd member too. Returns once none of them runs."""
        pids = self._pids()
        victims = [pids["patroni"].get(node.name)]
        if etcd:
            victims.append(pids["etcd"].get(node.name))
        victims.append(_postmaster_pid(node.dir(self.workdir) / "data"))
        everyone = set()
        for pid in filter(None, victims):
            everyone |= {pid, *_descendants(pid)}
        for pid in everyone:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in everyone) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._save_pid("patroni", node.name, None)
        if etcd:
            self._save_pid("etcd", node.name, None)

    def _spawn(self, kind: str, node: Node, command: list[str]) -> int:
        logfile = node.dir(self.workdir) / f"{kind}.out"
        with open(logfile, "ab") as out:
            kwargs: dict[str, Any] = {}
            if self._user is not None:
                kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
            env = {**os.environ, "HOME": str(self.workdir)}
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=node.dir(self.workdir),
                env=env,
                **kwargs,
            )
        self._save_pid(kind, node.name, proc.pid)
        log.info("started %s of %s (pid %d)", kind, node.name, proc.pid)
        return proc.pid

    def _own(self, path: Path) -> None:
        if self._user is None:
            return
        for item in [path, *path.rglob("*")]:
            os.chown(item, self._user.pw_uid, self._user.pw_gid)
        path.chmod(0o700)

    def _create_database(self) -> None:
        leader = self.leader_node()
        if leader is None:
            raise ClusterError("no leader to create the database on")
        with psycopg.connect(self.layout.node_dsn(leader, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'chot'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE chot")

    # --- observation ----------------------------------------------------------------------

    def members(self) -> list[Member]:
        """Patroni's view of the cluster, asked of any node whose REST API answers."""
        for node in self.layout.nodes:
            data = _get_json(f"http://{self.layout.host}:{node.rest}/cluster")
            if data is not None:
                return [
                    Member(
                        m["name"],
                        m["role"],
                        m.get("state", ""),
                        m.get("timeline"),
                        m.get("lag") if isinstance(m.get("lag"), int) else None,
                    )
                    for m in data.get("members", [])
                ]
        return []

    def leader(self) -> str | None:
        """The node that holds the leader key and runs as primary, if any."""
        for member in self.members():
            if member.role == "leader" and member.state == "running":
                return member.name
        return None

    def leader_node(self) -> Node | None:
        name = self.leader()
        return next((n for n in self.layout.nodes if n.name == name), None)

    def node(self, name: str) -> Node:
        return next(n for n in self.layout.nodes if n.name == name)

    def replicated(self, count: int | None = None) -> bool:
        """Every other node (or `count` of them) streams from the leader, one of them sync."""
        members = self.members()
        want = len(self.layout.nodes) - 1 if count is None else count
        # Patroni 3.0 says "running" for a replica (later versions say "streaming"); a lag
        # figure means it replays the leader's WAL
        streaming = [
            m
            for m in members
            if m.role != "leader" and m.state in ("running", "streaming") and m.lag is not None
        ]
        sync_ok = not self.layout.synchronous or any(m.role == "sync_standby" for m in streaming)
        return self.leader() is not None and len(streaming) >= want and sync_ok

    def running(self) -> dict[str, dict[str, bool]]:
        pids = self._pids()
        return {
            node.name: {
                "etcd": _alive(pids["etcd"].get(node.name)),
                "patroni": _alive(pids["patroni"].get(node.name)),
                "postgres": _alive(_postmaster_pid(node.dir(self.workdir) / "data")),
            }
            for node in self.layout.nodes
        }

    def _etcd_healthy(self) -> bool:
        return all(
            (_get_json(f"http://{self.layout.host}:{n.etcd_client}/health") or {}).get("health")
            == "true"
            for n in self.layout.nodes
            if _alive(self._pids()["etcd"].get(n.name))
        )

    @staticmethod
    def wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise ClusterError(f"{what} within {timeout_s:.0f} s")

    def _kill_postgres(self, node: Node, sig: signal.Signals) -> None:
        pid = _postmaster_pid(node.dir(self.workdir) / "data")
        if pid and _alive(pid):
            _signal(pid, sig)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def _run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        raise ClusterError(
            f"running as root needs the user {RUN_AS}: run scripts/bootstrap-ha"
        ) from None


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    """The JSON body, whatever the status (Patroni answers 503 with a JSON body too)."""
    try:
        return httpx.get(url, timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return None


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError, PermissionError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
