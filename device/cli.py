"""`chot device run` (the scanner service). `chot scan IMAGE…` lives in chot/scan_cmd.py.

What these commands print for people (a refused config, the lights switched off) is in the
command line's language: CHOT_LANG or the locale, Vietnamese otherwise (common/i18n.py).
"""

import argparse
from pathlib import Path

from common.cli import UsageError
from common.i18n import N_, Phrase, cli_translator

CONFIG_REFUSED = N_("scanner configuration refused: {error}")


def _refused(error: Exception) -> UsageError:
    """The error `chot` prints on exit 2; the config error's detail (its file) as it is."""
    phrase = Phrase(CONFIG_REFUSED, {"error": error})
    return UsageError(phrase.render(cli_translator()))


def add_commands(sub: argparse._SubParsersAction) -> None:
    device = sub.add_parser("device", help="run the scanner unit")
    device_sub = device.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = device_sub.add_parser("run", help="run the scan loop from a config file")
    run.add_argument("--config", type=Path, required=True, help="device TOML config")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=run_device)
    off = device_sub.add_parser(
        "lights-off", help="switch every indicator pin off (ExecStopPost after any stop)"
    )
    off.add_argument("--config", type=Path, required=True, help="device TOML config")
    off.set_defaults(func=run_lights_off)


def run_device(args: argparse.Namespace) -> int:
    from device.app import run_from_config
    from device.config import ConfigError

    try:
        run_from_config(args.config, args.duration)
    except ConfigError as exc:
        raise _refused(exc) from None
    return 0


def run_lights_off(args: argparse.Namespace) -> int:
    """After a watchdog abort or an OOM kill the scanner could not switch its LEDs off."""
    from device.config import ConfigError, load_config
    from device.gpio import make_backend

    try:
        gpio = load_config(args.config).gpio
    except ConfigError as exc:
        raise _refused(exc) from None
    backend = make_backend(gpio.backend, dict(gpio.pins))  # setup drives every pin low
    backend.close()
    done = Phrase(N_("Indicator lights off ({count} pins)"), {"count": len(gpio.pins)})
    print(done.render(cli_translator()), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m device.cli``) for a unit without the other packages."""
    import logging

    parser = argparse.ArgumentParser(prog="chot")
    add_commands(parser.add_subparsers(dest="group", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
