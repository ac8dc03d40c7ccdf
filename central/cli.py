"""`chot central ...`: run the service, migrate, query, and apply retention.

This module wires the commands: `serve`, `migrate`, `retention`, `token` and the store-wide
queries (`health`, `load`, `stats`) live here; the credential-checked tracing and report commands
(`visits`, `contacts`, `report`, `access-log`) in cli_tracing.py; `cluster` in cluster/cli.py.
Every query command prints a table, or JSON with `--json`, or CSV with `--csv` (cli_output.py).
"""

import argparse
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from central import cli_tracing as tracing
from central import queries
from central.backends import open_store
from central.cli_options import (
    cli_config,
    parse_time,
    query_parser,
    range_args,
    store_args,
    store_url,
    time_range,
    timezone,
)
from central.cli_output import emit, json_default, print_csv, print_human, stats_rows
from central.cluster.cli import add_cluster_commands
from central.config import CentralConfig, hash_token
from central.migrate import migrate
from central.store import DAY_MS, Store
from common.cli import UsageError
from common.i18n import N_, Phrase, cli_translator

__all__ = ["add_commands", "parse_time"]  # parse_time: kept importable from here


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("central", help="central store: serve, migrate, trace, report")
    cmds = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = cmds.add_parser("serve", help="run the HTTP ingest and query service")
    store_args(serve)
    serve.add_argument("--registry", type=Path, help="registry JSON (signers, gateway tokens)")
    serve.add_argument("--host", help="listen address (default from config, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from config, 8470)")
    serve.set_defaults(func=run_serve)

    mig = cmds.add_parser("migrate", help="create or upgrade the schema")
    store_args(mig)
    mig.add_argument("--json", action="store_true")
    mig.set_defaults(func=run_migrate)

    visits = query_parser(cmds, "visits", "tracing: checkpoint visits of one subject pseudonym")
    visits.add_argument("--sub", required=True, help="subject pseudonym, 32 hex digits")
    range_args(visits)
    tracing.credential_args(visits)
    visits.set_defaults(func=tracing.traced(tracing.visits, "tracing"))

    contacts = query_parser(
        cmds, "contacts", "tracing: subjects at the same site around the same time"
    )
    contacts.add_argument("--sub", required=True, help="subject pseudonym, 32 hex digits")
    contacts.add_argument("--window-min", type=int, default=30, help="± minutes (default 30)")
    range_args(contacts)
    tracing.credential_args(contacts)
    contacts.set_defaults(func=tracing.traced(tracing.contacts, "tracing"))

    report = query_parser(
        cmds, "report", "passed / failed (by reason) / warned per site, day, lane"
    )
    report.add_argument("--day", required=True, help="local day YYYY-MM-DD")
    report.add_argument("--days", type=int, default=1, help="number of days from --day")
    report.add_argument("--site", help="one site (default: all)")
    report.add_argument(
        "--totals",
        action="store_true",
        help="totals per checkpoint per day and for the period: declarations, accepted, "
        "rejected, refusals by reason, manual entries apart (central/reports.py)",
    )
    tracing.credential_args(report)
    report.set_defaults(func=tracing.traced(tracing.report, "report"))

    health = query_parser(cmds, "health", "events per device and hour, clock states")
    range_args(health, default_hours=24)
    health.set_defaults(func=_handler(_health))

    load = query_parser(cmds, "load", "latest load summary of each gateway (to divert traffic)")
    load.add_argument("--site", help="one site (default: all)")
    load.set_defaults(func=_handler(_load))

    stats = query_parser(cmds, "stats", "event counts, duplicates and sequence gaps")
    stats.set_defaults(func=_handler(_stats))

    log = query_parser(cmds, "access-log", "who ran which tracing query")
    log.add_argument("--limit", type=int, default=100)
    tracing.credential_args(log)
    log.set_defaults(func=tracing.traced(tracing.access_log, "tracing"))

    retention = cmds.add_parser("retention", help="delete whole days older than N days")
    store_args(retention)
    retention.add_argument("--days", type=int, help="keep this many days (default from config)")
    retention.add_argument("--json", action="store_true")
    retention.set_defaults(func=run_retention)

    token = cmds.add_parser("token", help="make an operator token and its hash for the config")
    token.add_argument("--operator", required=True)
    token.set_defaults(func=run_token)

    add_cluster_commands(cmds)  # chot central cluster up|down|status


# --- handlers -------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central.api import create_app

    config = cli_config(args)
    if config is None:
        if not (args.store and args.registry):
            raise UsageError("serve needs --config FILE, or --store URL and --registry FILE")
        config = CentralConfig(store=args.store, registry=args.registry)
    updates = {
        k: v
        for k, v in {
            "store": args.store,
            "registry": args.registry,
            "host": args.host,
            "port": args.port,
        }.items()
        if v
    }
    config = config.model_copy(update=updates)
    if not config.registry.exists():
        raise UsageError(f"registry {config.registry} not found")
    store = open_store(config.store)
    migrate(store)
    uvicorn.run(create_app(config, store), host=config.host, port=config.port, log_level="info")
    store.close()
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    with open_store(store_url(args)) as store:
        applied = migrate(store)
    done = Phrase(N_("Migrations applied: {names}"), {"names": ", ".join(applied)})
    emit(args, {"applied": applied}, done if applied else Phrase(N_("Schema up to date")))
    return 0


def run_retention(args: argparse.Namespace) -> int:
    config = cli_config(args)
    days = args.days or (config.retention_days if config else None)
    if not days or days < 1:
        raise UsageError("give --days N (>= 1) or retention_days in the config")
    cutoff_day = int(time.time() * 1000) // DAY_MS - days
    with open_store(store_url(args)) as store:
        result = store.delete_days_before(cutoff_day)
    dates = [str(dt.date(1970, 1, 1) + dt.timedelta(days=d)) for d in result["days"]]
    result = {"days": dates, "events": result["events"]}
    values = {"events": result["events"], "days": ", ".join(dates) or "-"}
    emit(args, result, Phrase(N_("Events deleted: {events}; days: {days}"), values))
    return 0


def run_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    shown = Phrase(
        N_("Token for {operator} (shown once): {token}"),
        {"operator": args.operator, "token": token},
    )
    print(shown.render(cli_translator()))
    print(f'config:  [operators.{args.operator}]\n         token_sha256 = "{hash_token(token)}"')
    print('         roles = ["report"]   # add "tracing" only for authorised tracers')
    return 0


def _handler(query: Callable[[Store, argparse.Namespace], Any]) -> Callable[..., int]:
    """Open the store, run the query, print it in the asked format."""

    def handle(args: argparse.Namespace) -> int:
        with open_store(store_url(args)) as store:
            try:
                result = query(store, args)
            except PermissionError as exc:
                raise UsageError(str(exc)) from None
        rows = result if isinstance(result, list) else stats_rows(result)
        if args.json:
            print(json.dumps(result, indent=2, default=json_default))
        elif args.csv:
            print_csv(rows)
        else:
            print_human(result, rows, timezone(args))
        return 0

    return handle


def _health(store: Store, args: argparse.Namespace) -> list[dict]:
    return queries.health(store, *time_range(args, timezone(args)))


def _load(store: Store, args: argparse.Namespace) -> list[dict]:
    return queries.load(store, site=args.site)


def _stats(store: Store, args: argparse.Namespace) -> dict:
    return queries.stats(store)
