"""`chot central ...`: run the service, migrate, query, and apply retention.

Tracing and report commands (`visits`, `contacts`, `report`, `access-log`) authenticate the
operator with their credential (`--credential FILE` or $CHOT_CREDENTIAL, issued by `chot
provision operator add NAME --role tracer|report`) and are written to the access log with its
name and role. With `--config` the CLI opens the store itself and checks the credential
against the centre's operator registry; without it, it asks the centre's HTTP API (`--central
URL`, or the URL in the credential file) with the token. Every query command prints a table,
or JSON with `--json`, or CSV with `--csv`; times are shown in the site's zone as ISO 8601
(JSON keeps both: `t_ms` and `t_local`).
"""

import argparse
import csv
import datetime as dt
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central import queries
from central.audit import AuditUnavailable
from central.backends import open_store
from central.cluster.cli import add_cluster_commands
from central.config import CentralConfig, hash_token, load_config
from central.migrate import migrate
from central.operators import (
    CredentialRefused,
    Identity,
    OperatorBook,
    credential_path,
    read_credential,
)
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
    _credential_args(visits)
    visits.set_defaults(func=_traced(_visits, "tracing"))

    contacts = _query(cmds, "contacts", "tracing: subjects at the same site around the same time")
    contacts.add_argument("--sub", required=True, help="subject pseudonym, 32 hex digits")
    contacts.add_argument("--window-min", type=int, default=30, help="± minutes (default 30)")
    _range_args(contacts)
    _credential_args(contacts)
    contacts.set_defaults(func=_traced(_contacts, "tracing"))

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
    _credential_args(report)
    report.set_defaults(func=_traced(_report, "report"))

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
    _credential_args(log)
    log.set_defaults(func=_traced(_access_log, "tracing"))

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


def _credential_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credential",
        type=Path,
        help="your operator credential file (default $CHOT_CREDENTIAL)",
    )
    parser.add_argument("--central", help="the centre's URL (default: the credential's)")
    parser.add_argument("--ca-file", type=Path, help="CA of the centre's TLS certificate")
    parser.add_argument("--operator", help=argparse.SUPPRESS)  # gone: refused with a pointer


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


@dataclass(frozen=True)
class Asked:
    """One traced query: what the CLI runs on the store, or asks the centre's API."""

    path: str  # API path
    params: dict[str, Any]


TracedQuery = Callable[[Store | None, argparse.Namespace, Identity | None], list[dict] | Asked]


def _traced(query: TracedQuery, grant: str) -> Callable[..., int]:
    """Authenticate the credential, run the query (store or API), log it, print it."""

    def handle(args: argparse.Namespace) -> int:
        if args.operator:
            raise UsageError("--operator is gone: give your credential, --credential FILE")
        try:
            credential = read_credential(credential_path(args.credential, os.environ.get))
            if args.config or args.store:
                rows = _run_on_store(query, args, credential, grant)
            else:
                rows = _run_on_api(query, args, credential)
        except (CredentialRefused, AuditUnavailable) as exc:
            raise UsageError(f"refused: {exc}") from None
        if args.json:
            print(json.dumps(rows, indent=2, default=_json_default))
        elif args.csv:  # both times, like JSON: X_ms and X_local
            _print_csv(rows)
        else:
            _print_traced(rows, _rows_timezone(args, rows))
        return 0

    return handle


def _rows_timezone(args: argparse.Namespace, rows: list[dict]) -> str:
    """The site's zone when every row is of one site; the centre's otherwise."""
    config = _config(args)
    sites = {r.get("site") for r in rows} - {None}
    if config is None:
        return queries.DEFAULT_TZ
    return config.timezone_for(sites.pop() if len(sites) == 1 else None)


def _print_traced(rows: list[dict], tz: str) -> None:
    """A table in the reader's language, times in the site's zone (central/human.py)."""
    plain = []
    for row in rows:
        item = {}
        for key, value in row.items():
            base = key.removesuffix("_ms")
            if key.endswith("_local") and key.removesuffix("_local") in queries.TIME_FIELDS:
                continue
            item[base if base in queries.TIME_FIELDS else key] = value
        plain.append(item)
    _print_human(plain, plain, tz)


def _run_on_store(query: TracedQuery, args: argparse.Namespace, credential, grant: str) -> list:
    config = _config(args)
    if config is None:
        raise UsageError(
            "checking your credential needs the centre's config (--config FILE: its operator "
            "registry); or leave out --store to ask the centre's API"
        )
    who = OperatorBook(config).check(credential, grant)
    with open_store(_store_url(args)) as store:
        rows = query(store, args, who)
        assert isinstance(rows, list)
        if args.command not in ("visits", "contacts"):  # those two log themselves
            params = {k: v for k, v in vars(args).items() if k in _LOGGED_ARGS and v}
            queries.log_access(store, who.name, "cli", args.command, params, len(rows), who.role)
    return queries.local_times(rows, config.timezone_for)


_LOGGED_ARGS = ("day", "days", "site", "totals", "limit")


def _run_on_api(query: TracedQuery, args: argparse.Namespace, credential) -> list:
    import httpx

    url = args.central or credential.central
    if not url:
        raise UsageError("give --central URL (the credential names no centre), or --config")
    asked = query(None, args, None)
    assert isinstance(asked, Asked)
    try:
        resp = httpx.get(
            url.rstrip("/") + asked.path,
            params=asked.params,
            headers={"Authorization": f"Bearer {credential.token}"},
            verify=str(args.ca_file) if args.ca_file else True,
            timeout=60.0,
        )
    except httpx.HTTPError as exc:
        raise UsageError(f"centre unreachable: {type(exc).__name__}: {exc}") from None
    if resp.status_code in (401, 403):
        detail = resp.json().get("detail", "") if resp.content else ""
        raise CredentialRefused(f"the centre refused the credential ({resp.status_code}) {detail}")
    if resp.status_code != 200:
        raise UsageError(f"the centre answered {resp.status_code}: {resp.text[:200]}")
    data = resp.json()
    if isinstance(data, dict):  # report totals
        return [*data["days"], *data["sites"], data["overall"]]
    return data


def _visits(store: Store | None, args: argparse.Namespace, who: Identity | None):
    t_from, t_to = _time_range(args, _timezone(args))
    sub = _sub(args.sub)
    if store is None or who is None:
        return Asked("/api/v1/visits", {"sub": sub.hex(), "from_ms": t_from, "to_ms": t_to})
    return queries.visits(store, sub, t_from, t_to, operator=who.name, role=who.role)


def _contacts(store: Store | None, args: argparse.Namespace, who: Identity | None):
    if args.window_min < 1:
        raise UsageError("--window-min must be >= 1")
    t_from, t_to = _time_range(args, _timezone(args))
    sub = _sub(args.sub)
    if store is None or who is None:
        params = {"sub": sub.hex(), "window_min": args.window_min, "from_ms": t_from}
        return Asked("/api/v1/contacts", {**params, "to_ms": t_to})
    return queries.contacts(
        store, sub, args.window_min, t_from, t_to, operator=who.name, role=who.role
    )


def _report(store: Store | None, args: argparse.Namespace, who: Identity | None):
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        raise UsageError("--day must be YYYY-MM-DD") from None
    last = day + dt.timedelta(days=max(1, args.days) - 1)
    if store is None:
        site = {"site": args.site} if args.site else {}
        if args.totals:
            return Asked("/api/v1/report/totals", {"from": day, "to": last, **site})
        return Asked("/api/v1/report", {"day": day, "days": args.days, **site})
    if getattr(args, "totals", False):
        from central.reports import build_report

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


def _access_log(store: Store | None, args: argparse.Namespace, who: Identity | None):
    if store is None:
        raise UsageError("access-log reads the store: give --config FILE")
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
