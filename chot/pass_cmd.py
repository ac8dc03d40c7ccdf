"""`chot pass verify|inspect` (and `issue`, contributed by provisioning): a pass on the command line.

Output never contains name, doc4 or dob unless `--reveal` is given.
"""

import argparse
import json
import sys
import time

from chot.trust_args import add_trust_arguments, load_trust_lists
from protocol.clock import Clock
from protocol.pass_v1 import decode_pass, verify_pass
from protocol.reasons import ProtocolError, Verdict


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("pass", help="verify, inspect and issue passes")
    pass_sub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = pass_sub.add_parser("verify", help="verify a pass offline against a trust list")
    verify.add_argument("qr_text", help="the QR text, or - to read it from standard input")
    add_trust_arguments(verify)
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


def run_verify(args: argparse.Namespace) -> int:
    text = read_qr_text(args.qr_text)
    now = args.at if args.at is not None else int(time.time())
    try:
        trust, revocations = load_trust_lists(args)
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
