"""`chot` — one command line for every part: pass, scan, device, gateway, provision, central, demo.

Each package registers its own group through `<package>.cli.add_commands(subparsers)`; handlers
return the exit code (0 ok, 1 refused / failing verdict, 2 usage error).
"""

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Packages that contribute command groups, in the order `chot --help` lists them.
COMMAND_MODULES = ("chot.pass_cmd", "device.cli", "gateway.cli", "provisioning.cli", "central.cli",
                   "chot.demo")  # fmt: skip


class UsageError(Exception):
    """Raised by a handler for bad arguments: exit code 2 with the message."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chot", description="chot: checkpoint pass scanners, gateways and central store."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
