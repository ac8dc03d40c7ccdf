"""`chot central ...`: run the service, migrate, query, and apply retention.

Tracing commands (`visits`, `contacts`) require `--operator NAME` and are written to the
access log. Every query command prints a table, or JSON with `--json`, or CSV with `--csv`.
"""

import argparse
import csv
import datetime as dt
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central import queries
from central.backends import open_store
from central.cluster.cli import add_cluster_commands
from central.config import CentralConfig, hash_token, load_config
from central.migrate import migrate
from central.store import DAY_MS, Store
from common.cli import UsageError
from common.i18n import N_, Phrase, cli_translator


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("central", help="central store: serve, migrate, trace, report")
    cmds = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = cmds.add_parser("serve", help="run the HTTP ingest and query service")
    _store_args(serve)
    serve.add_argument("--registry", type=Path, help="registry JSON (signers, gateway tokens)")
    serve.add_argument("--host", help="listen address (default from config, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from config, 8470)")
    serve.set_defaults(func=run_serve)

    mig = cmds.add_parser("migrate", help="create or upgrade the schema")
    _store_args(mig)
    mig.add_argument("--json", action="store_true")
    mig.set_defaults(func=run_migrate)

    visits = _query(cmds, "visits", "tracing: checkpoint visits of one subject pseudonym")
    visits.add_argument("--sub", required=True, help="subject pseudonym, 32 hex digits")
    _range_args(visits)
    visits.add_argument("--operator", required=True, help="who asks (written to the access log)")
    visits.set_defaults(func=_handler(_visits))

    contacts = _query(cmds, "contacts", "tracing: subjects at the same site around the same time")
    contacts.add_argument("--sub", required=True, help="subject pseudonym, 32 hex digits")
    contacts.add_argument("--window-min", type=int, default=30, help="± minutes (default 30)")
    _range_args(contacts)
    contacts.add_argument("--operator", required=True, help="who asks (written to the access log)")
    contacts.set_defaults(func=_handler(_contacts))

    report = _query(cmds, "report", "passed / failed (by reason) / warned per site, day, lane")
    report.add_argument("--day", required=True, help="local day YYYY-MM-DD")
    report.add_argument("--days", type=int, default=1, help="number of days from --day")
    report.add_argument("--site", help="one site (default: all)")
    report.add_argument(
        "--totals",
        action="store_true",
        help="totals per checkpoint per day and for the period: declarations, accepted, "
        "rejected, refusals by reason, manual entries apart (central/reports.py)",
    )
    report.set_defaults(func=_handler(_report))

    health = _query(cmds, "health", "events per device and hour, clock states")
    _range_args(health, default_hours=24)
    health.set_defaults(func=_handler(_health))

    load = _query(cmds, "load", "latest load summary of each gateway (to divert traffic)")
    load.add_argument("--site", help="one site (default: all)")
    load.set_defaults(func=_handler(_load))

    stats = _query(cmds, "stats", "event counts, duplicates and sequence gaps")
    stats.set_defaults(func=_handler(_stats))

    log = _query(cmds, "access-log", "who ran which tracing query")
    log.add_argument("--limit", type=int, default=100)
    log.set_defaults(func=_handler(_access_log))

    retention = cmds.add_parser("retention", help="delete whole days older than N days")
    _store_args(retention)
    retention.add_argument("--days", type=int, help="keep this many days (default from config)")
    retention.add_argument("--json", action="store_true")
    retention.set_defaults(func=run_retention)

    token = cmds.add_parser("token", help="make an operator token and its hash for the config")
    token.add_argument("--operator", required=True)
    token.set_defaults(func=run_token)

    add_cluster_commands(cmds)  # chot central cluster up|down|status


# --- argument helpers -----------------------------------------------------------------------


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="central config (TOML or JSON)")
    parser.add_argument("--store", help="store URL: sqlite:///path.db or postgresql://...")


def _query(cmds: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    parser = cmds.add_parser(name, help=text)
    _store_args(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--csv", action="store_true", help="print CSV")
    return parser


def _range_args(parser: argparse.ArgumentParser, default_hours: int | None = None) -> None:
    what = f"default: {default_hours} h ago" if default_hours else "default: everything"
    parser.add_argument("--from", dest="t_from", help=f"start: ISO date/time or Unix s ({what})")
    parser.add_argument("--to", dest="t_to", help="end (exclusive): ISO date/time or Unix s")
    parser.set_defaults(default_hours=default_hours)


def parse_time(value: str, tz: str = queries.DEFAULT_TZ) -> int:
    """ISO date or date-time (local time unless it has an offset) or Unix seconds -> Unix ms."""
    if value.isdigit():
        return int(value) * 1000
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"bad time {value!r}: use YYYY-MM-DD[THH:MM[+07:00]] or Unix s") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return int(moment.timestamp() * 1000)


def _time_range(args: argparse.Namespace, tz: str) -> tuple[int, int]:
    now = int(time.time() * 1000)
    default_from = now - args.default_hours * 3_600_000 if args.default_hours else 0
    t_from = parse_time(args.t_from, tz) if args.t_from else default_from
    t_to = parse_time(args.t_to, tz) if args.t_to else now + DAY_MS
    if t_to <= t_from:
        raise UsageError("--to must be after --from")
    return t_from, t_to


def _sub(value: str) -> bytes:
    try:
        sub = bytes.fromhex(value)
    except ValueError:
        sub = b""
    if len(sub) != 16:
        raise UsageError("--sub must be 32 hex digits (a subject pseudonym)")
    return sub


def _config(args: argparse.Namespace) -> CentralConfig | None:
    return load_config(args.config) if getattr(args, "config", None) else None


def _store_url(args: argparse.Namespace) -> str:
    config = _config(args)
    url = args.store or (config.store if config else None)
    if not url:
        raise UsageError("give --store URL or --config FILE")
    return url


def _timezone(args: argparse.Namespace) -> str:
    config = _config(args)
    return config.timezone if config else queries.DEFAULT_TZ


# --- handlers -------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central.api import create_app

    config = _config(args)
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
    with open_store(_store_url(args)) as store:
        applied = migrate(store)
    done = Phrase(N_("Migrations applied: {names}"), {"names": ", ".join(applied)})
    _emit(args, {"applied": applied}, done if applied else Phrase(N_("Schema up to date")))
    return 0


def run_retention(args: argparse.Namespace) -> int:
    config = _config(args)
    days = args.days or (config.retention_days if config else None)
    if not days or days < 1:
        raise UsageError("give --days N (>= 1) or retention_days in the config")
    cutoff_day = int(time.time() * 1000) // DAY_MS - days
    with open_store(_store_url(args)) as store:
        result = store.delete_days_before(cutoff_day)
    dates = [str(dt.date(1970, 1, 1) + dt.timedelta(days=d)) for d in result["days"]]
    result = {"days": dates, "events": result["events"]}
    values = {"events": result["events"], "days": ", ".join(dates) or "-"}
    _emit(args, result, Phrase(N_("Events deleted: {events}; days: {days}"), values))
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
        with open_store(_store_url(args)) as store:
            try:
                result = query(store, args)
            except PermissionError as exc:
                raise UsageError(str(exc)) from None
        rows = result if isinstance(result, list) else _stats_rows(result)
        if args.json:
            print(json.dumps(result, indent=2, default=_json_default))
        elif args.csv:
            _print_csv(rows)
        else:
            _print_human(result, rows, _timezone(args))
        return 0

    return handle


def _visits(store: Store, args: argparse.Namespace) -> list[dict]:
    t_from, t_to = _time_range(args, _timezone(args))
    return queries.visits(store, _sub(args.sub), t_from, t_to, operator=args.operator)


def _contacts(store: Store, args: argparse.Namespace) -> list[dict]:
    if args.window_min < 1:
        raise UsageError("--window-min must be >= 1")
    t_from, t_to = _time_range(args, _timezone(args))
    return queries.contacts(
        store, _sub(args.sub), args.window_min, t_from, t_to, operator=args.operator
    )


def _report(store: Store, args: argparse.Namespace) -> list[dict]:
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        raise UsageError("--day must be YYYY-MM-DD") from None
    if getattr(args, "totals", False):
        from central.reports import build_report

        last = day + dt.timedelta(days=max(1, args.days) - 1)
        totals = build_report(store, day, last, site=args.site, tz=_timezone(args))
        rows = [*totals.days, *totals.sites, totals.overall]
        return [{**asdict(t), "reasons": dict(sorted(t.reasons.items()))} for t in rows]
    return queries.report(store, day, site=args.site, days=args.days, tz=_timezone(args))


def _health(store: Store, args: argparse.Namespace) -> list[dict]:
    return queries.health(store, *_time_range(args, _timezone(args)))


def _load(store: Store, args: argparse.Namespace) -> list[dict]:
    return queries.load(store, site=args.site)


def _stats(store: Store, args: argparse.Namespace) -> dict:
    return queries.stats(store)


def _access_log(store: Store, args: argparse.Namespace) -> list[dict]:
    return queries.access_log(store, args.limit)


# --- output ---------------------------------------------------------------------------------


def _stats_rows(stats: dict) -> list[dict]:
    return [{"dev": dev, **item} for dev, item in stats["by_device"].items()]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def _print_csv(rows: list[dict]) -> None:
    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})


def _print_human(result: Any, rows: list[dict], tz: str) -> None:
    from central.human import stats_summary

    if isinstance(result, dict):  # stats: the store's totals, then per scanner
        print(stats_summary(result, cli_translator()))
    _print_table(rows, tz)


def _print_table(rows: list[dict], tz: str | None = None) -> None:
    """A table in the command line's language, Unix ms times in the site's zone (ISO 8601;
    central/human.py); times already written as text are shown as they are."""
    from central.human import table

    for line in table(rows, cli_translator(), tz):
        print(line)


def _emit(args: argparse.Namespace, data: dict, text: Phrase) -> None:
    print(json.dumps(data) if args.json else text.render(cli_translator()))


def _json_default(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else str(value)
