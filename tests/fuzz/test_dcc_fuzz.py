"""Fuzzing the DCC verifier: no input may raise, hang or pass.

"Pass" is only allowed when the signed content is exactly the original certificate's (the same
protected header and payload under a valid signature): dropping the optional COSE tag or
flipping the ignored padding bits of the last deflate block re-encodes the same certificate,
anything else must be refused. Runs in `make test` (short) and longer with CHOT_FUZZ_SECONDS.
"""

import os
import random
import time
import tracemalloc
import zlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import dcc_pki as pki
from harness.dcc_pki import NOW
from protocol.base45 import b45encode
from protocol.clock import Clock, ClockState
from protocol.dcc import ALG_ES256, ALG_PS256, decode_dcc, verify_dcc
from protocol.dcc_trust import DccTrust, direct_trust
from protocol.reasons import Verdict
from tests.fuzz.test_fuzz import mutate

SECONDS = float(os.environ.get("CHOT_FUZZ_SECONDS", "6"))
MEMORY_LIMIT = 4 * 1024 * 1024
CLOCKS = (Clock.synced(NOW), Clock(NOW, ClockState.BOUNDED, NOW - 86400))


@pytest.fixture(scope="module")
def world() -> tuple[DccTrust, list[bytes]]:
    ca = pki.DccCa()
    signers = [pki.make_signer(ca, ALG_ES256), pki.make_signer(ca, ALG_PS256)]
    trust = DccTrust(
        1, NOW - 1, NOW + 86400, direct_trust([s.der for s in signers]).dscs, b"k" * 32
    )
    seeds = [
        pki.sign_cose(s, cbor2.dumps(pki.cwt(make())))
        for s in signers
        for make in (pki.vaccination, pki.lab_test, pki.recovery)
    ]
    return trust, seeds


def signed_content(cose_bytes: bytes) -> tuple[bytes, bytes]:
    msg = decode_dcc(pki.to_qr(cose_bytes)).msg
    return msg.protected_bytes, msg.payload


def check(text: str, trust: DccTrust, originals: set[tuple[bytes, bytes]]) -> None:
    for clock in CLOCKS:
        result = verify_dcc(text, trust, clock)  # must not raise
        if result.verdict is Verdict.PASS:
            msg = decode_dcc(text).msg
            assert (msg.protected_bytes, msg.payload) in originals, text


def as_texts(data: bytes) -> list[str]:
    return [
        "HC1:" + data.decode("latin-1"),
        "HC1:" + b45encode(data),
        "HC1:" + b45encode(zlib.compress(data)),
    ]


@pytest.mark.timeout(120)
def test_seeds_pass_and_their_mutations_never_pass_or_raise(world):
    trust, seeds = world
    originals = {signed_content(s) for s in seeds}
    for seed in seeds:
        assert verify_dcc(pki.to_qr(seed), trust, CLOCKS[0]).verdict is Verdict.PASS
    rng = random.Random(int(os.environ.get("CHOT_FUZZ_SEED", "2022")))
    deadline = time.monotonic() + SECONDS
    runs = worst = 0
    tracemalloc.start()
    try:
        while time.monotonic() < deadline:
            data = mutate(rng, rng.choice(seeds), seeds)
            tracemalloc.reset_peak()
            for text in as_texts(data):
                check(text, trust, originals)
            qr = pki.to_qr(rng.choice(seeds))
            cut = rng.randrange(4, len(qr))
            check(qr[:cut] + rng.choice("0A $%*+-./:Zz\x00é") + qr[cut + 1 :], trust, originals)
            worst = max(worst, tracemalloc.get_traced_memory()[1])
            runs += 1
    finally:
        tracemalloc.stop()
    assert runs > 50
    assert worst < MEMORY_LIMIT


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=600))
def test_any_text_is_refused_without_raising(world, text):
    trust, _ = world
    for candidate in (text, "HC1:" + text):
        assert verify_dcc(candidate, trust, CLOCKS[0]).verdict is not Verdict.PASS


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.integers(-300, 10) | st.text(max_size=3), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_cbor_structure_is_refused(world, value):
    trust, seeds = world
    tag = cbor2.loads(seeds[0])
    forged = cbor2.dumps(cbor2.CBORTag(18, [tag.value[0], {}, cbor2.dumps(value), tag.value[3]]))
    for data in (cbor2.dumps(value), forged):
        text = pki.to_qr(data)
        assert verify_dcc(text, trust, CLOCKS[0]).verdict is not Verdict.PASS
