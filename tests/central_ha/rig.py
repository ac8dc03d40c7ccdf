"""A whole HA rig for fault tests, the smoke run and the benchmark: a Patroni cluster,
the central API on it, and two gateways forwarding signed events while faults are injected.

Everything is real: etcd, Patroni and PostgreSQL processes (central.cluster), uvicorn serving
central.api, gateway SQLite stores and gateway.forwarder.Forwarder over HTTP. The final
accounting is the centre's own: queries.stats (eid and (dev, seq) duplicates, per-device
gaps in 1..max_seq) plus a check that every eid sent is stored.
"""

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psycopg

from central import queries
from central.api import create_app
from central.cluster import Cluster, Layout, Node
from central.migrate import migrate
from central.store_postgres import PostgresStore
from gateway.forwarder import Forwarder
from gateway.store import Accepted
from gateway.store import Store as GatewayStore
from tests.central.fixtures import GATEWAY_TOKENS, Fleet
from tests.central.server import serve
from tests.central_ha.tcp_proxy import TcpProxy

log = logging.getLogger(__name__)

# gateway -> its devices (tests.central.fixtures.SIGNERS; dev-x is revoked there)
GATEWAYS = {"gw-hn": ["dev-a", "dev-b"], "gw-hcm": ["dev-c"]}


@dataclass
class Outcome:
    """The smoke run's last JSON line."""

    nodes: int
    events_sent: int
    events_stored: int
    missing: int
    duplicates: int
    failover_s: float | None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Commits:
    """Every confirmed batch: (monotonic time, server port, events)."""

    items: list[tuple[float, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, port: int, events: int) -> None:
        with self.lock:
            self.items.append((time.monotonic(), port, events))

    def first_after(self, t: float, not_port: int | None = None) -> float | None:
        with self.lock:
            times = [c[0] for c in self.items if c[0] > t and c[1] != not_port]
        return min(times) if times else None

    def events(self) -> int:
        with self.lock:
            return sum(c[2] for c in self.items)


class HaRig:
    def __init__(
        self,
        nodes: int = 3,
        *,
        synchronous: bool = True,
        proxied: bool = False,
        root: Path | None = None,
    ) -> None:
        # the cluster runs as chot-ha when we are root: its directory must be reachable
        self.root = Path(tempfile.mkdtemp(prefix="chot-ha-", dir=root or "/tmp"))
        self.root.chmod(0o755)
        self.proxies: dict[int, TcpProxy] = {}
        layout = Layout.plan(self.root / "cluster", nodes, synchronous=synchronous)
        if proxied:  # other nodes reach each PostgreSQL through a proxy we can cut
            for node in layout.nodes:
                self.proxies[node.index] = TcpProxy(node.pg).start()
            nodes = [replace(n, pg_advertised=self.proxies[n.index].port) for n in layout.nodes]
            layout = replace(layout, nodes=nodes)
        self.layout = layout
        self.cluster = Cluster(layout)
        self.fleet = Fleet.create(self._private("fleet"))
        self.commits = Commits()
        self.store: PostgresStore | None = None
        self.url = ""
        self.forwarders: dict[str, Forwarder] = {}
        self.gateway_stores: dict[str, GatewayStore] = {}
        self.sent: dict[str, list[bytes]] = {gw: [] for gw in GATEWAYS}
        self.issued: dict[str, int] = {}  # device -> highest seq signed
        self._stack = ExitStack()
        self._feeders: list[threading.Thread] = []

    def _private(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    # --- start and stop -------------------------------------------------------------------

    def start(self, *, failover_wait_s: float = 15.0) -> "HaRig":
        started = time.monotonic()
        self.cluster.up()
        log.info("cluster up in %.1f s", time.monotonic() - started)
        self.store = PostgresStore(self.layout.dsn(), failover_wait_s=failover_wait_s)
        self.store.on_commit = self.commits
        migrate(self.store)
        app = create_app(self.fleet.config(self.layout.dsn()), self.store)
        self.url = self._stack.enter_context(serve(app))
        return self

    def start_gateways(self, *, batch_size: int = 500) -> None:
        for gateway in GATEWAYS:
            store = GatewayStore(self._private("gateways") / f"{gateway}.db", own_id=gateway)
            self.gateway_stores[gateway] = store
            forwarder = Forwarder(
                store,
                gateway,
                self.url,
                GATEWAY_TOKENS[gateway],
                batch_size=batch_size,
                read_timeout_s=60.0,
                backoff_initial_s=0.2,
                backoff_max_s=1.0,  # retry soon after a failover (the default cap is 300 s)
                idle_poll_s=0.2,
            )
            self.forwarders[gateway] = forwarder
            forwarder.start()

    def close(self) -> None:
        for thread in self._feeders:
            thread.join(60)
        for forwarder in self.forwarders.values():
            forwarder.stop()
        for store in self.gateway_stores.values():
            store.close()
        self._stack.close()
        if self.store is not None:
            self.store.close()
        try:
            self.cluster.down()
        finally:
            for proxy in self.proxies.values():
                proxy.stop()
            shutil.rmtree(self.root, ignore_errors=True)

    # --- traffic --------------------------------------------------------------------------

    def feed(self, total: int, rate_per_s: float = 2000.0) -> None:
        """Split `total` signed events over the gateways' devices and commit them into the
        gateway stores at about `rate_per_s`, as scanners would, in a background thread."""
        per_gateway = {gw: total // len(GATEWAYS) for gw in GATEWAYS}
        first = next(iter(GATEWAYS))
        per_gateway[first] += total - sum(per_gateway.values())
        for gateway, count in per_gateway.items():
            events = self._events(gateway, count)
            thread = threading.Thread(
                target=self._feed_one,
                args=(gateway, events, rate_per_s / len(GATEWAYS)),
                name=f"feed-{gateway}",
                daemon=True,
            )
            self._feeders.append(thread)
            thread.start()

    def _events(self, gateway: str, count: int) -> list[Accepted]:
        devices = GATEWAYS[gateway]
        now = int(time.time() * 1000)
        out = []
        for i in range(count):
            dev = devices[i % len(devices)]
            subject = i % 5000
            event = self.fleet.event(
                dev,
                now - 60_000 + i,
                sub=subject.to_bytes(16, "big"),
                ref=(subject + 7).to_bytes(16, "big"),
            )
            raw = self.fleet.sign(event)
            out.append(Accepted(event.eid, dev, event.seq, event.typ, event.t_ms, raw))
            self.sent[gateway].append(event.eid)
            self.issued[dev] = event.seq
        return out

    def _feed_one(self, gateway: str, events: list[Accepted], rate: float) -> None:
        chunk = 100
        store = self.gateway_stores[gateway]
        for start in range(0, len(events), chunk):
            store.commit_batch(events[start : start + chunk])
            self.forwarders[gateway].wake()
            time.sleep(chunk / rate)

    def events_sent(self) -> int:
        return sum(len(v) for v in self.sent.values())

    def confirmed(self) -> int:
        return sum(f.stats.confirmed for f in self.forwarders.values())

    def wait_confirmed(self, count: int, timeout_s: float) -> None:
        wait_until(lambda: self.confirmed() >= count, timeout_s, f"{count} events confirmed")

    # --- faults ---------------------------------------------------------------------------

    def leader(self, timeout_s: float = 60.0) -> Node:
        wait_until(lambda: self.cluster.leader_node() is not None, timeout_s, "a leader")
        node = self.cluster.leader_node()
        assert node is not None
        return node

    def kill_leader(self, *, etcd: bool = False) -> tuple[Node, float]:
        leader = self.leader()
        self.cluster.kill_node(leader, etcd=etcd)
        killed_at = time.monotonic()
        log.info("killed %s (etcd too: %s)", leader.name, etcd)
        return leader, killed_at

    def wait_new_leader(self, old: Node, timeout_s: float = 60.0) -> Node:
        """Until another node leads (Patroni names a dead leader until its key expires)."""
        wait_until(lambda: self.cluster.leader() not in (None, old.name), timeout_s, "a new leader")
        # Patroni names the new leader as it asks PostgreSQL to promote; writes come a
        # moment later (CI once read "session is read-only" on every survivor here)
        wait_until(self._accepts_writes, timeout_s, "the new leader to accept writes")
        return self.leader()

    def _accepts_writes(self) -> bool:
        try:
            with psycopg.connect(self.layout.dsn()) as conn:
                return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError:
            return False

    def failover_s(self, old: Node, killed_at: float) -> float | None:
        first = self.commits.first_after(killed_at, not_port=old.pg)
        return None if first is None else round(first - killed_at, 2)

    # --- accounting -----------------------------------------------------------------------

    def leader_store(self) -> PostgresStore:
        """Reads straight from the leader (standbys may lag a few ms behind)."""
        dsn = self.layout.dsn()
        return PostgresStore(dsn, read_url=dsn)

    def outcome(self, failover_s: float | None) -> Outcome:
        with self.leader_store() as store:
            stats = queries.stats(store)
            stored = {bytes(r["eid"]) for r in store.fetch("SELECT eid FROM events")}
        sent = {eid for eids in self.sent.values() for eid in eids}
        by_device = stats["by_device"]
        gaps = sum(d["missing"] for d in by_device.values())
        # events numbered 1..n per device: a lost tail is no gap, so count against what was sent
        lost_tail = sum(
            max(0, issued - by_device.get(dev, {}).get("max_seq", 0))
            for dev, issued in self.issued.items()
        )
        return Outcome(
            nodes=len(self.layout.nodes),
            events_sent=len(sent),
            events_stored=stats["events_central"],
            missing=max(gaps + lost_tail, len(sent - stored)),
            duplicates=stats["duplicates"],
            failover_s=failover_s,
        )

    def node_role(self, name: str) -> str | None:
        return next((m.role for m in self.cluster.members() if m.name == name), None)

    def count_on(self, node: Node) -> int:
        with psycopg.connect(self.layout.node_dsn(node)) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")


def rig(**options) -> Iterator[HaRig]:
    """For a pytest fixture: a started rig, torn down whatever happens."""
    made = HaRig(**options)
    try:
        made.start()
        yield made
    finally:
        made.close()
