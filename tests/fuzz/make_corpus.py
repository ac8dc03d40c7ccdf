"""Regenerate the seed corpus in tests/fuzz/corpus (public keys and vectors only).

python tests/fuzz/make_corpus.py
"""

import json
import zlib
from pathlib import Path

import cbor2

from protocol.base45 import b45decode
from protocol.events import Event, sign_event
from protocol.pass_v1 import PREFIX
from protocol.trust import sign_trust_list
from tests.fuzz.harness import ISSUER, ISSUER_ENTRY

HERE = Path(__file__).parent
VECTOR = HERE.parent / "protocol" / "vectors" / "chot-pass-v1.json"


def main() -> None:
    corpus = HERE / "corpus"
    corpus.mkdir(exist_ok=True)
    vector = json.loads(VECTOR.read_text())
    cose = bytes.fromhex(vector["cose_hex"])
    seeds = {
        "pass-cose.bin": cose,
        "pass-zlib.bin": b45decode(vector["qr_text"][len(PREFIX) :]),
        "pass-base45.txt": vector["qr_text"][len(PREFIX) :].encode(),
        "zlib-bomb.bin": zlib.compress(b"\0" * 1_000_000, 9),
        "deep-array.bin": b"\x81" * 40 + b"\x00",
        "big-length.bin": b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
        "foreign-tag.bin": cbor2.dumps(cbor2.CBORTag(1, 1630458000)),
        "event.bin": sign_event(
            Event(
                bytes(16),
                "scan",
                "hn01-lane1",
                "HN-01",
                1,
                1630458000000,
                "synced",
                "pass",
                "ok",
                "lane-1",
                bytes(16),
                bytes(16),
                bytes(8),
                "declaration",
                1,
                300,
                90,
            ),
            ISSUER,
        ),
        "trust.bin": sign_trust_list(
            [ISSUER_ENTRY], version=1, issued_at=1630000000, expires_at=1640000000, root_key=ISSUER
        ),
    }
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)


if __name__ == "__main__":
    main()
