"""Where each piece of a local HA cluster lives, and the config files it runs from.

One layout, written to `<workdir>/cluster.json`, describes N nodes on loopback; node i has
an etcd member (client + peer port), a Patroni REST API and a PostgreSQL port, and its own
directory `<workdir>/node<i>/`. From it come the etcd command lines and each node's
`patroni.yml`, the same files the production layout in central/README.md starts from.

Timing (Patroni's defaults are ttl 30, loop_wait 10, retry_timeout 10: up to ~40 s without a
leader). Here ttl 15, loop_wait 3, retry_timeout 6 (loop_wait + 2 * retry_timeout <= ttl,
as Patroni requires): a dead leader's key expires within 15 s and a standby acts within 3 s
after that, so kill -9 to a new leader is ~10-20 s; retry_timeout 6 s still rides out a
one-off stall of etcd or PostgreSQL on a loaded 2-core box without demoting the leader.
"""

import json
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PG_BIN = "/usr/lib/postgresql/15/bin"
SCOPE = "chot"
STATE_FILE = "cluster.json"
PORTS_PER_NODE = 4  # etcd client, etcd peer, Patroni REST, PostgreSQL


@dataclass(frozen=True)
class Timing:
    """Patroni's DCS timing (seconds); see the module docstring for why these values."""

    ttl: int = 15
    loop_wait: int = 3
    retry_timeout: int = 6

    def __post_init__(self) -> None:
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError("Patroni needs loop_wait + 2 * retry_timeout <= ttl")


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    etcd_client: int
    etcd_peer: int
    rest: int
    pg: int
    # port other nodes use to reach this PostgreSQL (a TCP proxy in fault tests, else pg)
    pg_advertised: int

    def dir(self, workdir: Path) -> Path:
        return workdir / self.name


@dataclass(frozen=True)
class Layout:
    workdir: Path
    nodes: list[Node]
    synchronous: bool = True  # False: the asynchronous comparison in the benchmark
    timing: Timing = field(default_factory=Timing)
    host: str = "127.0.0.1"

    @classmethod
    def plan(
        cls,
        workdir: Path,
        nodes: int = 3,
        base_port: int | None = None,
        *,
        synchronous: bool = True,
        timing: Timing | None = None,
        advertised: dict[int, int] | None = None,
    ) -> "Layout":
        """Ports from base_port upward (4 per node), or free ones picked by the OS."""
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        ports = (
            [base_port + i for i in range(nodes * PORTS_PER_NODE)]
            if base_port
            else free_ports(nodes * PORTS_PER_NODE)
        )
        made = []
        for i in range(nodes):
            client, peer, rest, pg = ports[i * PORTS_PER_NODE : (i + 1) * PORTS_PER_NODE]
            pg_adv = (advertised or {}).get(i, pg)
            made.append(Node(i, f"node{i + 1}", client, peer, rest, pg, pg_adv))
        return cls(Path(workdir).resolve(), made, synchronous, timing or Timing())

    # --- persistence ----------------------------------------------------------------------

    def save(self) -> Path:
        path = self.workdir / STATE_FILE
        data = asdict(self)
        data["workdir"] = str(self.workdir)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, workdir: Path) -> "Layout":
        data = json.loads((Path(workdir) / STATE_FILE).read_text())
        return cls(
            Path(data["workdir"]),
            [Node(**n) for n in data["nodes"]],
            data["synchronous"],
            Timing(**data["timing"]),
            data["host"],
        )

    # --- what clients use -----------------------------------------------------------------

    def dsn(self, target: str = "read-write", dbname: str = "chot") -> str:
        """Multi-host libpq URL: libpq tries each host and keeps the first that matches
        target_session_attrs (read-write finds the leader; prefer-standby a replica)."""
        hosts = ",".join(f"{self.host}:{n.pg}" for n in self.nodes)
        return (
            f"postgresql://postgres@{hosts}/{dbname}"
            f"?target_session_attrs={target}&connect_timeout=2"
        )

    def node_dsn(self, node: Node, dbname: str = "chot") -> str:
        return f"postgresql://postgres@{self.host}:{node.pg}/{dbname}?connect_timeout=2"

    def etcd_endpoints(self) -> str:
        return ",".join(f"{self.host}:{n.etcd_client}" for n in self.nodes)

    # --- etcd -----------------------------------------------------------------------------

    def etcd_command(self, node: Node) -> list[str]:
        peers = ",".join(f"e{n.name}=http://{self.host}:{n.etcd_peer}" for n in self.nodes)
        data_dir = node.dir(self.workdir) / "etcd"
        member = f"http://{self.host}:{node.etcd_peer}"
        client = f"http://{self.host}:{node.etcd_client}"
        return [
            "etcd",
            f"--name=e{node.name}",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={member}",
            f"--initial-advertise-peer-urls={member}",
            f"--initial-cluster={peers}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={SCOPE}-{self.nodes[0].etcd_peer}",
            # a loaded 2-core test box stalls now and then: 5x the default election timeout
            "--heartbeat-interval=250",
            "--election-timeout=2500",
            "--log-level=warn",
        ]

    # --- Patroni --------------------------------------------------------------------------

    def patroni_config(self, node: Node) -> dict[str, Any]:
        """One node's patroni.yml (as a dict). Trust auth on loopback only: a local cluster.
        Production uses scram and passwords from PATRONI_* environment variables."""
        node_dir = node.dir(self.workdir)
        parameters = {
            "wal_level": "replica",
            "hot_standby": "on",
            "wal_log_hints": "on",  # pg_rewind needs it (or data checksums)
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "256MB",
            "max_connections": 100,
            "shared_buffers": "64MB",
            "synchronous_commit": "on",
        }
        return {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO", "dir": str(node_dir / "log")},
            "restapi": {
                "listen": f"{self.host}:{node.rest}",
                "connect_address": f"{self.host}:{node.rest}",
            },
            "etcd3": {"hosts": self.etcd_endpoints()},
            "bootstrap": {
                "dcs": {
                    "ttl": self.timing.ttl,
                    "loop_wait": self.timing.loop_wait,
                    "retry_timeout": self.timing.retry_timeout,
                    "maximum_lag_on_failover": 1_048_576,
                    # durable ack: a commit returns only once a standby has it; strict:
                    # with no standby left, commits wait (ingest answers 503) instead of
                    # silently going single-copy
                    "synchronous_mode": self.synchronous,
                    "synchronous_mode_strict": self.synchronous,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": parameters,
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": f"{self.host}:{node.pg}",
                "connect_address": f"{self.host}:{node.pg_advertised}",
                "data_dir": str(node_dir / "data"),
                "bin_dir": PG_BIN,
                "pgpass": str(node_dir / "pgpass"),
                # a new replica copies the leader now, not after a spread checkpoint (minutes)
                "basebackup": [{"checkpoint": "fast"}],
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "postgres"},
                    "rewind": {"username": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(node_dir)},
                "pg_hba": [
                    f"host replication postgres {self.host}/32 trust",
                    f"host all all {self.host}/32 trust",
                    "local all all trust",
                ],
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    def write_configs(self) -> list[Path]:
        written = []
        for node in self.nodes:
            node_dir = node.dir(self.workdir)
            (node_dir / "log").mkdir(parents=True, exist_ok=True)
            path = node_dir / "patroni.yml"
            path.write_text(to_yaml(self.patroni_config(node)))
            written.append(path)
        return written


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so the OS gives different ones)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block YAML for the plain dicts/lists/scalars of a Patroni config (no PyYAML needed);
    strings are JSON-quoted, which YAML reads as the same strings."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines) + ("\n" if indent == 0 else "")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))
