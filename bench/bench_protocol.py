"""Pass verification: the whole chain (QR text -> verdict) against bare PyNaCl verify.

Goal (foundation issue): the chain costs no more than 2x the bare signature check. The bare
reference verifies the very same Sig_structure bytes and signatures, precomputed, in this run.
"""

import os
import sys
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._table import markdown, rate, row, time_each
from protocol.clock import Clock
from protocol.pass_v1 import PassClaims, decode_pass, encode_pass, verify_pass
from protocol.trust import IssuerKey, TrustList

NOW = 1_700_000_000


def run(quick: bool = False) -> list[dict]:
    n = 500 if quick else 3000
    issuer = SigningKey.generate()
    public = bytes(issuer.verify_key)
    entry = IssuerKey("VN-HN", public)
    trust = TrustList(1, NOW - 10, NOW + 86400, {entry.kid: entry})
    texts = [
        encode_pass(
            PassClaims(
                "VN-HN",
                NOW - 60,
                NOW - 60 + 72 * 3600,  # a declaration's 72 h, the trust list's limit
                os.urandom(16),
                os.urandom(16),
                "declaration",
                doc4="1234",
                dob=1990,
            ),
            issuer,
        )
        for _ in range(n)
    ]
    signed = []
    for text in texts:
        msg = decode_pass(text).msg
        signed.append((msg.to_be_signed(), msg.signature))
    clock = Clock.synced(NOW)
    verify_key = VerifyKey(public)

    def chain(text):
        assert verify_pass(text, trust, clock).verdict.value == "pass"

    def bare(item):
        verify_key.verify(item[0], item[1])

    # interleave small blocks so both see the same machine state (this host's speed drifts
    # by +-20 % over seconds; whole-run rounds turned that drift into ratio noise)
    chain_samples, bare_samples = [], []
    block = 50
    for _ in range(3):
        for i in range(0, n, block):
            bare_samples += time_each(bare, signed[i : i + block])
            chain_samples += time_each(chain, texts[i : i + block])
    chain_rate, bare_rate = rate(chain_samples), rate(bare_samples)
    ratio = bare_rate / chain_rate
    return [
        row(
            "pass verify: QR text -> verdict",
            f"{chain_rate:,.0f} /s",
            f"{bare_rate:,.0f} /s bare Ed25519 verify",
            ratio,
            "<= 2.00x",
            ratio <= 2.0,
        )
    ]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
