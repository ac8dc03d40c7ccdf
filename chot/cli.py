"""`chot` — one command line for every part: pass, scan, device, gateway, provision, central, demo.

Each package registers its own group through `<package>.cli.add_commands(subparsers)`; handlers
return the exit code (0 ok, 1 refused / failing verdict, 2 usage error).
"""

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from common.cli import UsageError

# Command group -> the module that registers it, in the order `chot --help` lists them.
# Only the chosen group's module is imported: a scanner running `chot device run` on a Pi does not
# pay for the web framework, PostgreSQL driver and crypto tooling of the other parts.
COMMAND_GROUPS = {
    "pass": "chot.pass_cmd",
    "scan": "chot.scan_cmd",
    "device": "device.cli",
    "gateway": "gateway.cli",
    "provision": "provisioning.cli",
    "central": "central.cli",
    "demo": "chot.demo",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chot", description="chot: checkpoint pass scanners, gateways and central store."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    chosen = _chosen_group(sys.argv[1:] if argv is None else argv)
    modules = [COMMAND_GROUPS[chosen]] if chosen else list(dict.fromkeys(COMMAND_GROUPS.values()))
    for name in modules:
        importlib.import_module(name).add_commands(sub)
    return parser


def _chosen_group(argv: Sequence[str]) -> str | None:
    """The command group named on the command line, if any (options before it skipped)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_GROUPS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"chot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
