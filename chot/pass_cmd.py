"""`chot pass verify|inspect` (and `issue`, contributed by provisioning): a pass on the command line.

Both take chot passes (`CHOT1:`) and EU Digital COVID Certificates (`HC1:`); a DCC's JSON is the
same object plus `"format": "dcc"`. Output never contains name, doc4, dob or a DCC's `ci`
unless `--reveal` is given.

`verify` exits 0 pass (green), 1 fail (red), 3 warn (amber: check by hand), 2 usage; its human
output starts with the verdict and the reason in plain words with what to do, in the
command line's language (CHOT_LANG or the locale; Vietnamese otherwise). JSON stays English.
"""

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from chot.trust_args import _root_key_from_home, add_trust_arguments, load_trust_lists
from common.cli import UsageError, print_record
from common.i18n import cli_translator
from common.reason_texts import reason_text, verdict_text
from protocol.clock import Clock
from protocol.dcc import decode_dcc, is_dcc, pass_ref_of, verify_dcc
from protocol.dcc_trust import (
    DccTrust,
    direct_trust,
    open_dcc_trust_list,
    read_certificate,
)
from protocol.pass_v1 import decode_pass, verify_pass
from protocol.reasons import ProtocolError, Verdict
from protocol.trust import root_keyring


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("pass", help="verify, inspect and issue passes")
    pass_sub = group.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = pass_sub.add_parser("verify", help="verify a pass offline against a trust list")
    verify.add_argument("qr_text", help="the QR text, or - to read it from standard input")
    add_trust_arguments(verify)
    add_dcc_arguments(verify)
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


def add_dcc_arguments(parser: argparse.ArgumentParser) -> None:
    """`--dcc-trust` (the root-signed DCC trust list) and `--dsc` (certificates trusted as is)."""
    parser.add_argument("--dcc-trust", type=Path, help="signed DCC trust list (dcc-trust.cose)")
    parser.add_argument(
        "--dsc",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="trust this Document Signer Certificate (PEM, base64 DER or DER); repeatable",
    )


def load_dcc_trust(args: argparse.Namespace) -> DccTrust | None:
    """The signed DCC list (root key as for --trust) plus any --dsc certificates, or None.

    Raises UsageError (unreadable file, bad certificate, no root key) or ProtocolError."""
    try:
        direct = direct_trust(read_certificate(path.read_bytes()) for path in args.dsc)
        if args.dcc_trust is None:
            return direct if direct.dscs else None
        data = args.dcc_trust.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--dsc: {exc}") from None
    hexes = list(args.root_key) or _root_key_from_home(args.dcc_trust)
    if not hexes and os.environ.get("CHOT_ROOT_PUBLIC_KEY"):
        hexes = os.environ["CHOT_ROOT_PUBLIC_KEY"].split(",")
    if not hexes:
        raise UsageError("--dcc-trust needs the ops root public key: --root-key HEX")
    try:
        keys = root_keyring(bytes.fromhex(h.strip()) for h in hexes)
    except ValueError:
        raise UsageError("--root-key must be hex") from None
    signed = open_dcc_trust_list(data, keys)
    return replace(signed, dscs={**signed.dscs, **direct.dscs}) if direct.dscs else signed


EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.WARN: 3}


def run_verify(args: argparse.Namespace) -> int:
    text = read_qr_text(args.qr_text)
    now = args.at if args.at is not None else int(time.time())
    try:
        trust, revocations = load_trust_lists(args)
        dcc_trust = load_dcc_trust(args) if is_dcc(text) else None
    except ProtocolError as exc:
        _print_verdict({"verdict": "fail", "reason": exc.reason.value, "detail": exc.detail}, args)
        return 1
    if is_dcc(text):
        dcc = verify_dcc(text, dcc_trust, Clock.synced(now), revocations=revocations)
        out = dcc.public_dict()
        if args.reveal and dcc.certificate is not None:
            c = dcc.certificate
            out.update(name=c.family_name, dob=c.dob, ci=c.ci)
        _print_verdict(out, args)
        return EXIT_CODES[dcc.verdict]
    result = verify_pass(text, trust, Clock.synced(now), revocations=revocations)
    out = result.public_dict()
    if args.reveal and result.claims is not None:
        out.update(name=result.claims.name, doc4=result.claims.doc4, dob=result.claims.dob)
    _print_verdict(out, args)
    return EXIT_CODES[result.verdict]


def run_inspect(args: argparse.Namespace) -> int:
    text = read_qr_text(args.qr_text)
    if is_dcc(text):
        return _inspect_dcc(text, args)
    try:
        decoded = decode_pass(text)
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


def _inspect_dcc(text: str, args: argparse.Namespace) -> int:
    """Structure and claims of a DCC without trust: no name, dob or ci."""
    try:
        decoded = decode_dcc(text)
    except ProtocolError as exc:
        _print({"reason": exc.reason.value, "detail": exc.detail, "format": "dcc"}, args)
        return 1
    c = decoded.claims
    out = {
        "issuer": c.iss,
        "kind": c.certificate.kind,
        "kid": decoded.kid.hex(),
        "alg": {-7: "ES256", -37: "PS256"}[decoded.msg.alg],
        "iat": c.iat,
        "exp": c.exp,
        "country": c.certificate.country,
        "pass_ref": pass_ref_of(decoded.msg.ref_material).hex(),
        "format": "dcc",
    }
    _print(out, args)
    return 0


def _print_verdict(data: dict, args: argparse.Namespace) -> None:
    """JSON as is; for people, "Không hợp lệ: Hết hạn — yêu cầu khai báo lại" first."""
    if not args.json:
        tr = cli_translator()
        words = reason_text(data.get("reason"), tr)
        print(f"{verdict_text(data.get('verdict'), tr)}: {words.line()}")
    _print(data, args)


def _print(data: dict, args: argparse.Namespace) -> None:
    print_record(data, args.json)
