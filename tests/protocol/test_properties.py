"""Property tests: round trips hold, and no input makes the verifier raise."""

import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.base45 import ALPHABET, b45decode, b45encode
from protocol.clock import Clock, ClockState
from protocol.events import open_event
from protocol.pass_v1 import PREFIX, PassClaims, decode_pass, encode_pass, verify_pass
from protocol.reasons import Reason
from protocol.trust import PASS_KINDS
from tests.protocol.conftest import NOW, make_pki

PKI = make_pki()
ISSUER = SigningKey.generate()

claims_strategy = st.builds(
    PassClaims,
    iss=st.text(min_size=1, max_size=20),
    iat=st.integers(0, 2**40),
    exp=st.integers(2**40, 2**41),
    cti=st.binary(min_size=16, max_size=16),
    sub=st.binary(min_size=16, max_size=16),
    kind=st.sampled_from(PASS_KINDS),
    nbf=st.none() | st.integers(0, 2**40),
    name=st.none() | st.text(max_size=60),
    doc4=st.none() | st.text(max_size=4),
    dob=st.none() | st.integers(1900, 2030),
)


@given(st.binary(max_size=300))
def test_base45_round_trip(data):
    assert b45decode(b45encode(data)) == data


@given(claims_strategy)
@settings(max_examples=60)
def test_pass_round_trip(claims):
    assert decode_pass(encode_pass(claims, ISSUER)).claims == claims


clocks = st.builds(
    Clock,
    now=st.integers(0, 2**34),
    state=st.sampled_from(list(ClockState)),
    lower_bound=st.none() | st.integers(0, 2**34),
)


@given(st.text(max_size=400), clocks)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_random_text_never_raises(text, clock):
    result = verify_pass(text, PKI.trust, clock)
    assert result.reason is not Reason.OK


@given(st.text(alphabet=ALPHABET, max_size=600))
@settings(max_examples=300)
def test_random_base45_never_raises(body):
    result = verify_pass(PREFIX + body, PKI.trust, Clock.synced(NOW))
    assert result.reason is not Reason.OK


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_random_compressed_bytes_never_raise(data):
    for text in (PREFIX + b45encode(data), PREFIX + b45encode(zlib.compress(data))):
        result = verify_pass(text, PKI.trust, Clock.synced(NOW))
        assert result.reason is not Reason.OK


@given(st.binary(max_size=600))
@settings(max_examples=200)
def test_random_event_bytes_are_refused_with_a_reason(data):
    try:
        open_event(data, lambda _dev: bytes(32))
    except Exception as exc:
        assert hasattr(exc, "reason"), repr(exc)
    else:
        raise AssertionError("random bytes accepted as an event")
