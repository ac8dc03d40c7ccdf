"""`chot scan IMAGE…` (decode + verify still images) and `chot device run` (the scanner service).

`scan` prints one JSON object per image: file, decoded, verdict (pass/fail/warn/none), reason,
ms; the QR text itself only with --show-payload (it holds name, doc4 and dob in the clear).
"""

import argparse
import json
import time
from pathlib import Path

from chot.cli import UsageError
from chot.trust_args import add_trust_arguments, load_trust_lists
from protocol.clock import Clock
from protocol.pass_v1 import verify_pass
from protocol.reasons import ProtocolError


def add_commands(sub: argparse._SubParsersAction) -> None:
    scan = sub.add_parser("scan", help="decode and verify QR passes in image files")
    scan.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    scan.add_argument("--json", action="store_true", help="one JSON object per line")
    scan.add_argument("--show-payload", action="store_true", help="also print the QR text")
    scan.add_argument("--decoder", choices=("zxing", "zbar"), default="zxing")
    add_trust_arguments(scan)
    scan.add_argument("--at", type=int, help="verify as of this Unix time (default: now)")
    scan.set_defaults(func=run_scan)

    device = sub.add_parser("device", help="run the scanner unit")
    device_sub = device.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = device_sub.add_parser("run", help="run the scan loop from a config file")
    run.add_argument("--config", type=Path, required=True, help="device TOML config")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=run_device)


def run_scan(args: argparse.Namespace) -> int:
    import cv2

    from device.decode import make_decoder

    try:
        trust, revocations = load_trust_lists(args)
    except ProtocolError as exc:
        raise UsageError(f"trust or revocation list refused: {exc}") from None
    decoder = make_decoder(args.decoder)
    clock = Clock.synced(args.at if args.at is not None else int(time.time()))
    status = 0
    for path in args.images:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            _emit({"file": str(path), "error": "cannot read image"}, args)
            status = 2
            continue
        t0 = time.perf_counter()
        texts = decoder.decode(gray)
        out: dict = {"file": str(path), "decoded": bool(texts), "verdict": "none", "reason": None}
        if texts:
            result = verify_pass(texts[0], trust, clock, revocations=revocations)
            out["verdict"], out["reason"] = result.verdict.value, result.reason.value
        out["ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if args.show_payload and texts:
            out["payload"] = texts[0]
        _emit(out, args)
    return status


def _emit(out: dict, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print("  ".join(f"{k}={v}" for k, v in out.items() if v is not None), flush=True)


def run_device(args: argparse.Namespace) -> int:
    from device.app import run_from_config
    from device.config import ConfigError

    try:
        run_from_config(args.config, args.duration)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
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
