"""`chot central visits|contacts|report|access-log`: the queries that need an operator's credential.

They authenticate the operator with their credential (`--credential FILE` or $CHOT_CREDENTIAL,
issued by `chot provision operator add NAME --role tracer|report`) and are written to the access
log with its name and role. With `--config` the CLI opens the store itself and checks the
credential against the centre's operator registry; without it, it asks the centre's HTTP API
(`--central URL`, or the URL in the credential file) with the token. Times are shown in the
site's zone as ISO 8601 (JSON and CSV keep both: `t_ms` and `t_local`).
"""

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from central import queries
from central.audit import AuditUnavailable
from central.backends import open_store
from central.cli_options import cli_config, store_url, subject, time_range, timezone
from central.cli_output import json_default, print_csv, print_human
from central.operators import (
    CredentialRefused,
    Identity,
    OperatorBook,
    credential_path,
    read_credential,
)
from central.store import Store
from common.cli import UsageError


def credential_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credential",
        type=Path,
        help="your operator credential file (default $CHOT_CREDENTIAL)",
    )
    parser.add_argument("--central", help="the centre's URL (default: the credential's)")
    parser.add_argument("--ca-file", type=Path, help="CA of the centre's TLS certificate")
    parser.add_argument("--operator", help=argparse.SUPPRESS)  # gone: refused with a pointer


@dataclass(frozen=True)
class Asked:
    """One traced query: what the CLI runs on the store, or asks the centre's API."""

    path: str  # API path
    params: dict[str, Any]


TracedQuery = Callable[[Store | None, argparse.Namespace, Identity | None], list[dict] | Asked]


def traced(query: TracedQuery, grant: str) -> Callable[..., int]:
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
            print(json.dumps(rows, indent=2, default=json_default))
        elif args.csv:  # both times, like JSON: X_ms and X_local
            print_csv(rows)
        else:
            _print_traced(rows, _rows_timezone(args, rows))
        return 0

    return handle


def _rows_timezone(args: argparse.Namespace, rows: list[dict]) -> str:
    """The site's zone when every row is of one site; the centre's otherwise."""
    config = cli_config(args)
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
    print_human(plain, plain, tz)


def _run_on_store(query: TracedQuery, args: argparse.Namespace, credential, grant: str) -> list:
    config = cli_config(args)
    if config is None:
        raise UsageError(
            "checking your credential needs the centre's config (--config FILE: its operator "
            "registry); or leave out --store to ask the centre's API"
        )
    who = OperatorBook(config).check(credential, grant)
    with open_store(store_url(args)) as store:
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


# --- the traced queries: on the store with the checked identity, or as an API request --------


def visits(store: Store | None, args: argparse.Namespace, who: Identity | None):
    t_from, t_to = time_range(args, timezone(args))
    sub = subject(args.sub)
    if store is None or who is None:
        return Asked("/api/v1/visits", {"sub": sub.hex(), "from_ms": t_from, "to_ms": t_to})
    return queries.visits(store, sub, t_from, t_to, operator=who.name, role=who.role)


def contacts(store: Store | None, args: argparse.Namespace, who: Identity | None):
    if args.window_min < 1:
        raise UsageError("--window-min must be >= 1")
    t_from, t_to = time_range(args, timezone(args))
    sub = subject(args.sub)
    if store is None or who is None:
        params = {"sub": sub.hex(), "window_min": args.window_min, "from_ms": t_from}
        return Asked("/api/v1/contacts", {**params, "to_ms": t_to})
    return queries.contacts(
        store, sub, args.window_min, t_from, t_to, operator=who.name, role=who.role
    )


def report(store: Store | None, args: argparse.Namespace, who: Identity | None):
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

        totals = build_report(store, day, last, site=args.site, tz=timezone(args))
        rows = [*totals.days, *totals.sites, totals.overall]
        return [{**asdict(t), "reasons": dict(sorted(t.reasons.items()))} for t in rows]
    return queries.report(store, day, site=args.site, days=args.days, tz=timezone(args))


def access_log(store: Store | None, args: argparse.Namespace, who: Identity | None):
    if store is None:
        raise UsageError("access-log reads the store: give --config FILE")
    return queries.access_log(store, args.limit)
