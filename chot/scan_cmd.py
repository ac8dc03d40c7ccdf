"""`chot scan IMAGE…`: decode and verify QR passes in still images (a bench and field tool).

Prints one record per image: file, decoded, verdict (pass/fail/warn/none), reason, ms; the QR
text itself only with --show-payload (it holds name, doc4 and dob in the clear). With --json
the record is JSON with English identifiers; otherwise one line per image for people, in the
command line's language (CHOT_LANG or the locale, Vietnamese otherwise): the verdict, the
reason in plain words and what to do, as `chot pass verify` says it. It lives in
the command line, not in device/, because it shares the trust-list options of `chot pass`.
"""

import argparse
import time
from pathlib import Path

from chot.pass_cmd import add_dcc_arguments, load_dcc_trust
from chot.trust_args import add_trust_arguments, load_trust_lists
from common.cli import UsageError, print_record
from common.cli_words import KIND_WORDS, word
from common.i18n import N_, Phrase, Translator, cli_translator
from common.reason_texts import reason_text, verdict_text
from protocol.clock import Clock
from protocol.dcc import is_dcc, verify_dcc
from protocol.pass_v1 import verify_pass
from protocol.reasons import ProtocolError


def add_commands(sub: argparse._SubParsersAction) -> None:
    scan = sub.add_parser("scan", help="decode and verify QR passes in image files")
    scan.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    scan.add_argument("--json", action="store_true", help="one JSON object per line")
    scan.add_argument("--show-payload", action="store_true", help="also print the QR text")
    scan.add_argument("--decoder", choices=("zxing", "zbar"), default="zxing")
    add_trust_arguments(scan)
    add_dcc_arguments(scan)  # chot passes and EU DCCs (HC1:) in one run
    scan.add_argument("--at", type=int, help="verify as of this Unix time (default: now)")
    scan.set_defaults(func=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    from device.decode import make_decoder
    from device.image_file import UnreadableImage, read_gray

    try:
        trust, revocations = load_trust_lists(args)
        dcc_trust = load_dcc_trust(args)
    except ProtocolError as exc:
        raise UsageError(f"trust or revocation list refused: {exc}") from None
    decoder = make_decoder(args.decoder)
    clock = Clock.synced(args.at if args.at is not None else int(time.time()))
    tr = cli_translator()
    status = 0
    for path in args.images:
        try:  # dimensions checked from the header first: a hostile file cannot exhaust memory
            gray = read_gray(path)
        except UnreadableImage as exc:
            unreadable = {"decoded": False, "verdict": "none", "reason": "unreadable"}
            record = {"file": str(path), **unreadable, "error": "cannot read image"}
            _show({**record, "detail": str(exc)}, args.json, tr)
            status = 2
            continue
        t0 = time.perf_counter()
        texts = decoder.decode(gray)
        out: dict = {"file": str(path), "decoded": bool(texts), "verdict": "none", "reason": None}
        if texts:
            if is_dcc(texts[0]):
                result = verify_dcc(texts[0], dcc_trust, clock, revocations=revocations)
                out["format"], out["kind"] = "dcc", result.claims.kind if result.claims else None
            else:
                result = verify_pass(texts[0], trust, clock, revocations=revocations)
            out["verdict"], out["reason"] = result.verdict.value, result.reason.value
        out["ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if args.show_payload and texts:
            out["payload"] = texts[0]
        _show(out, args.json, tr)
    return status


def _show(record: dict, as_json: bool, tr: Translator) -> None:
    """JSON as is; for people "card.png: Không hợp lệ: Hết hạn — yêu cầu khai báo lại"."""
    if as_json:
        print_record(record, as_json)
        return
    values = {"file": record["file"], "ms": record.get("ms")}
    if "error" in record:
        line = Phrase(N_("{file}: cannot read the image ({detail})"), {**values, **record})
    elif not record["decoded"]:
        line = Phrase(N_("{file}: no QR code found ({ms} ms)"), values)
    else:
        values |= {
            "verdict": verdict_text(record["verdict"], tr),
            "reason": reason_text(record["reason"], tr).line(),
        }
        line = Phrase(N_("{file}: {verdict}: {reason} ({ms} ms)"), values)
        if record.get("kind"):
            values["kind"] = word(KIND_WORDS, record["kind"], tr)
            line = Phrase(N_("{file}: {verdict}: {reason}, {kind} ({ms} ms)"), values)
    print(line.render(tr), flush=True)
    if record.get("payload"):
        print(Phrase(N_("QR text: {payload}"), record).render(tr), flush=True)
