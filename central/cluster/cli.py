"""`chot central cluster up|down|status`: the local HA cluster for tests, demos and ops trials.

`up` writes every config file under --workdir (cluster.json, nodeN/patroni.yml, the etcd
command lines in nodeN/etcd.cmd), starts etcd and Patroni, waits for a leader and a
synchronous standby, and prints the DSNs; `down` stops them (Patroni stops PostgreSQL).
"""

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from central.cluster.layout import STATE_FILE, Layout
from central.cluster.supervise import Cluster, ClusterError
from common.cli import UsageError
from common.i18n import N_, Phrase, Translator, cli_translator

# Patroni's member roles and states (as its REST API names them), in words for people
ROLE_WORDS = {
    "leader": N_("leader"),
    "sync_standby": N_("synchronous standby"),
    "replica": N_("standby"),
    "standby_leader": N_("standby leader"),
    "down": N_("down"),
}
STATE_WORDS = {
    "running": N_("running"),
    "streaming": N_("streaming"),
    "stopped": N_("stopped"),
    "starting": N_("starting"),
    "start failed": N_("start failed"),
    "crashed": N_("crashed"),
}


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
    up.set_defaults(func=_reporting(run_up))
    for name, text, func in (
        ("down", "stop the cluster (PostgreSQL shuts down cleanly)", run_down),
        ("status", "members, roles and processes", run_status),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("--workdir", type=Path, required=True)
        verb.add_argument("--json", action="store_true")
        verb.set_defaults(func=_reporting(func))


def _reporting(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A cluster that cannot be started or reached is a one-line message and exit 1, not a
    traceback."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ClusterError as exc:
            print(f"chot: {exc}", file=sys.stderr)
            return 1

    return wrapped


def run_up(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll
    if (args.workdir / STATE_FILE).exists():
        held = N_("{workdir} already holds a cluster: `chot central cluster down` it first")
        raise UsageError(_say(held, workdir=args.workdir))
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
        for line in up_lines(info, cli_translator()):
            print(line)
    return 0


def up_lines(info: dict, tr: Translator) -> list[str]:
    """What `cluster up` tells people: how long it took and the two DSNs (data)."""
    return [
        Phrase(
            N_("HA cluster of {nodes} nodes up in {seconds} s"),
            {"nodes": info["nodes"], "seconds": info["up_s"]},
        ).render(tr),
        Phrase(N_("Write DSN (the leader): {dsn}"), {"dsn": info["dsn"]}).render(tr),
        Phrase(N_("Read DSN (a standby first): {dsn}"), {"dsn": info["read_dsn"]}).render(tr),
    ]


def status_line(row: dict, tr: Translator) -> str:
    """One node: its role and state in words, then which of its processes run."""

    def word(table: dict[str, str], value: object) -> str:
        message = table.get(str(value))
        return tr.gettext(message) if message else str(value)

    def running(name: str) -> str:
        return tr.gettext(N_("running") if row.get(name) else N_("not running"))

    details = [word(STATE_WORDS, row["state"])] if row["state"] else []
    if row["timeline"] is not None:
        details.append(Phrase(N_("timeline {n}"), {"n": row["timeline"]}).render(tr))
    if row["lag"] is not None:
        details.append(Phrase(N_("lag {bytes} bytes"), {"bytes": row["lag"]}).render(tr))
    processes = Phrase(
        N_("etcd {etcd}, Patroni {patroni}, PostgreSQL {postgres}"),
        {name: running(name) for name in ("etcd", "patroni", "postgres")},
    ).render(tr)
    role = word(ROLE_WORDS, row["role"])
    return f"{row['node']}: {role}" + "".join(f", {d}" for d in details) + f"; {processes}"


def _say(message: str, **values: object) -> str:
    return Phrase(message, values).render(cli_translator())


def _existing(workdir: Path) -> Cluster:
    if not (workdir / STATE_FILE).exists():
        raise UsageError(
            _say(N_("no cluster in {workdir} (no {file})"), workdir=workdir, file=STATE_FILE)
        )
    return Cluster(Layout.load(workdir))


def run_down(args: argparse.Namespace) -> int:
    _existing(args.workdir).down()
    (args.workdir / STATE_FILE).unlink()
    print(json.dumps({"down": True}) if args.json else _say(N_("HA cluster stopped")))
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
        tr = cli_translator()
        for row in rows:
            print(status_line(row, tr))
    return 0
