"""`chot gateway ...`: run the site gateway, check its config, read its status, enter a
manual entry. Also runnable alone: `python -m gateway.cli gateway run --config FILE`.
"""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def add_commands(sub) -> None:
    gw = sub.add_parser("gateway", help="site gateway: ingest, store, forward, distribute")
    gsub = gw.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")

    run = gsub.add_parser("run", help="run the gateway until SIGTERM (or --duration)")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    run.set_defaults(func=cmd_run)

    check = gsub.add_parser("check-config", help="validate a gateway config file")
    check.add_argument("--config", required=True, type=Path)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check_config)

    status = gsub.add_parser("status", help="store depth, forward lag, rejects, gaps, devices")
    status.add_argument("--config", required=True, type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    unlock = gsub.add_parser(
        "unlock-login", help="forget failed status page logins (of an address, a user, or all)"
    )
    unlock.add_argument("--config", required=True, type=Path)
    unlock.add_argument("--user", help="only this account's failures")
    unlock.add_argument("--address", help="only failures from this source IP")
    unlock.set_defaults(func=cmd_unlock_login)

    manual = gsub.add_parser("manual", help="record a hand-checked paper declaration")
    manual.add_argument("--config", required=True, type=Path)
    manual.add_argument("--category", default="paper_declaration")
    manual.add_argument("--operator", required=True)
    manual.add_argument("--lane")
    manual.add_argument("--doc4", help="last 4 ID characters; kept in the gateway store only")
    manual.add_argument("--json", action="store_true")
    manual.set_defaults(func=cmd_manual)


def _config(args: argparse.Namespace):
    # imported here, not at the top: the verifier process re-imports this module (the
    # gateway's __main__) and needs none of pydantic
    from gateway.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"chot gateway: {exc}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import GatewayApp

    config = _config(args)
    if config is None:
        return 2
    app = GatewayApp(config).start()
    app.run(args.duration)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 1
    if args.json:
        print(json.dumps({"ok": True, "id": config.id, "site": config.site}))
    else:
        print(f"ok: gateway {config.id} for site {config.site}")
    return 0


def _open_store(config):
    from gateway.store import Store

    s = config.store
    return Store(
        config.store_path,
        max_bytes=s.max_bytes,
        disk_alert_free_bytes=s.disk_alert_free_bytes,
        retention_days=s.retention_days,
        own_id=config.id,
    )


def cmd_unlock_login(args: argparse.Namespace) -> int:
    """The administrator's way out of a login lockout; safe while the gateway runs."""
    from gateway.store.auth_store import AuthStore

    config = _config(args)
    if config is None:
        return 2
    store = _open_store(config)
    try:
        cleared = AuthStore(store).clear_attempts(address=args.address, account=args.user)
    finally:
        store.close()
    print(f"cleared {cleared} failed login(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The store's figures and every alert (gateway/web/alerts.py, as on the page and
    /metrics); for people in the site's language (CHOT_LANG or the locale first)."""
    from gateway.fetcher import read_fetch_status
    from gateway.store import now_ms
    from gateway.web.status import report as status_report
    from gateway.web.texts import status_lines

    config = _config(args)
    if config is None:
        return 2
    store = _open_store(config)
    try:
        report = {
            **status_report(store, config, now_ms()),
            # the running gateway's document fetcher, from its last round (gateway/fetcher.py)
            "documents": read_fetch_status(config.state_dir),
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from common.i18n import cli_translator

        for line in status_lines(report, cli_translator(config.language), config.timezone):
            print(line)
    return 0


def cmd_manual(args: argparse.Namespace) -> int:
    from gateway.app import load_signing_key
    from gateway.manual import GatewaySigner

    config = _config(args)
    if config is None:
        return 2
    store = _open_store(config)
    try:
        signer = GatewaySigner(
            store, load_signing_key(config.signing_key_file), config.id, config.site
        )
        event = signer.record_manual(args.category, args.operator, lane=args.lane, doc4=args.doc4)
    except ValueError as exc:
        print(f"chot gateway manual: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    out = {"eid": event.eid_hex, "seq": event.seq}
    print(
        json.dumps(out) if args.json else f"recorded manual entry {event.eid_hex} seq {event.seq}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m gateway.cli gateway run ...`), without chot.cli."""
    parser = argparse.ArgumentParser(prog="chot")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_commands(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
