"""`chot pass verify|inspect` (and `issue`, contributed by provisioning): a pass on the command line.

Output never contains name, doc4 or dob unless `--reveal` is given.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from chot.cli import UsageError
from protocol.clock import Clock
from protocol.pass_v1 import decode_pass, verify_pass
from protocol.reasons import ProtocolError, Verdict
from protocol.trust import open_revocation_list, open_trust_list, root_keyring


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("pass", help="verify, inspect and issue passes")
    pass_sub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = pass_sub.add_parser("verify", help="verify a pass offline against a trust list")
    verify.add_argument("qr_text", help="the QR text, or - to read it from standard input")
    verify.add_argument("--trust", type=Path, help="signed trust list (trust.cose)")
    verify.add_argument("--revocations", type=Path, help="signed revocation list")
    verify.add_argument(
        "--root-key",
        action="append",
        default=[],
        help="ops root public key (hex) that signs the trust list; repeatable; "
        "default: $CHOT_ROOT_PUBLIC_KEY or the ops home next to --trust",
    )
    verify.add_argument("--at", type=int, help="verify as of this Unix time (default: now)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.add_argument("--reveal", action="store_true", help="also print name, doc4 and dob")
    verify.set_defaults(func=run_verify)

    inspect = pass_sub.add_parser("inspect", help="decode a pass without checking trust")
    inspect.add_argument("qr_text", help="the QR text, or - to read it from standard input")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=run_inspect)

    from provisioning.cli import add_pass_issue

    add_pass_issue(pass_sub)


def read_qr_text(value: str) -> str:
    text = sys.stdin.read() if value == "-" else value
    return text.strip("\r\n")


def _root_keys(args: argparse.Namespace) -> dict[bytes, bytes]:
    hexes = list(args.root_key)
    if not hexes and os.environ.get("CHOT_ROOT_PUBLIC_KEY"):
        hexes = os.environ["CHOT_ROOT_PUBLIC_KEY"].split(",")
    if not hexes and args.trust is not None:
        hexes = _root_key_from_home(args.trust)
    if not hexes:
        raise UsageError("--trust needs the ops root public key: --root-key HEX")
    try:
        return root_keyring(bytes.fromhex(h.strip()) for h in hexes)
    except ValueError:
        raise UsageError("--root-key must be hex") from None


def _root_key_from_home(trust_file: Path) -> list[str]:
    """An ops home keeps root.pub beside its trust list: use it when verifying from the home."""
    for folder in (trust_file.parent, trust_file.parent.parent):
        pub = folder / "root.pub"
        if pub.is_file():
            return [pub.read_text().strip()]
    return []


def run_verify(args: argparse.Namespace) -> int:
    text = read_qr_text(args.qr_text)
    now = args.at if args.at is not None else int(time.time())
    trust = revocations = None
    if args.trust is not None:
        keys = _root_keys(args)
        try:
            trust = open_trust_list(args.trust.read_bytes(), keys)
            if args.revocations is not None:
                revocations = open_revocation_list(args.revocations.read_bytes(), keys)
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except ProtocolError as exc:
            _print({"verdict": "fail", "reason": exc.reason.value, "detail": exc.detail}, args)
            return 1
    result = verify_pass(text, trust, Clock.synced(now), revocations=revocations)
    out = result.public_dict()
    if args.reveal and result.claims is not None:
        out.update(name=result.claims.name, doc4=result.claims.doc4, dob=result.claims.dob)
    _print(out, args)
    return 0 if result.verdict is Verdict.PASS else 1


def run_inspect(args: argparse.Namespace) -> int:
    try:
        decoded = decode_pass(read_qr_text(args.qr_text))
    except ProtocolError as exc:
        _print({"reason": exc.reason.value, "detail": exc.detail}, args)
        return 1
    c = decoded.claims
    _print(
        {
            "issuer": c.iss,
            "kind": c.kind,
            "kid": decoded.kid.hex(),
            "iat": c.iat,
            "exp": c.exp,
            "pass_ref": c.pass_ref.hex(),
        },
        args,
    )
    return 0


def _print(data: dict, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        print("  ".join(f"{k}={v}" for k, v in data.items() if v is not None))
