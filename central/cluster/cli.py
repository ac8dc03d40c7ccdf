"""`chot central cluster up|down|status`: the local HA cluster for tests, demos and ops trials.

`up` writes every config file under --workdir (cluster.json, nodeN/patroni.yml, the etcd
command lines in nodeN/etcd.cmd), starts etcd and Patroni, waits for a leader and a
synchronous standby, and prints the DSNs; `down` stops them (Patroni stops PostgreSQL).
"""

import argparse
import json
import logging
import shlex
import time
from pathlib import Path

from central.cluster.layout import STATE_FILE, Layout
from central.cluster.supervise import Cluster
from common.cli import UsageError


def add_cluster_commands(cmds: argparse._SubParsersAction) -> None:
    cluster = cmds.add_parser("cluster", help="local HA cluster: etcd + Patroni PostgreSQL")
    verbs = cluster.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="start etcd and N Patroni-managed PostgreSQL nodes")
    up.add_argument("--workdir", type=Path, required=True, help="configs, data and logs")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--base-port", type=int, help="first of 4 ports per node (default: free)")
    up.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="asynchronous replication (benchmark comparison only)",
    )
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=run_up)
    for name, text, func in (
        ("down", "stop the cluster (PostgreSQL shuts down cleanly)", run_down),
        ("status", "members, roles and processes", run_status),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("--workdir", type=Path, required=True)
        verb.add_argument("--json", action="store_true")
        verb.set_defaults(func=func)


def run_up(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll
    if (args.workdir / STATE_FILE).exists():
        raise UsageError(f"{args.workdir} already holds a cluster: `cluster down` it first")
    layout = Layout.plan(
        args.workdir, args.nodes, args.base_port, synchronous=not args.asynchronous
    )
    started = time.monotonic()
    Cluster(layout).up()
    for node in layout.nodes:  # the etcd command lines, for the production layout docs
        (node.dir(layout.workdir) / "etcd.cmd").write_text(
            shlex.join(layout.etcd_command(node)) + "\n"
        )
    info = {
        "nodes": len(layout.nodes),
        "dsn": layout.dsn(),
        "read_dsn": layout.dsn("prefer-standby"),
        "etcd": layout.etcd_endpoints(),
        "up_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(info))
    else:
        print(f"cluster of {info['nodes']} up in {info['up_s']} s")
        print(f"write DSN: {info['dsn']}")
        print(f"read DSN:  {info['read_dsn']}")
    return 0


def _existing(workdir: Path) -> Cluster:
    if not (workdir / STATE_FILE).exists():
        raise UsageError(f"no cluster in {workdir} (no {STATE_FILE})")
    return Cluster(Layout.load(workdir))


def run_down(args: argparse.Namespace) -> int:
    _existing(args.workdir).down()
    (args.workdir / STATE_FILE).unlink()
    print(json.dumps({"down": True}) if args.json else "cluster stopped")
    return 0


def run_status(args: argparse.Namespace) -> int:
    cluster = _existing(args.workdir)
    members = {m.name: m for m in cluster.members()}
    rows = []
    for name, procs in cluster.running().items():
        member = members.get(name)
        rows.append(
            {
                "node": name,
                "role": member.role if member else "down",
                "state": member.state if member else "",
                "timeline": member.timeline if member else None,
                "lag": member.lag if member else None,
                **procs,
            }
        )
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0
