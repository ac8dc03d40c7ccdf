"""The byte-for-byte reading of the usual COSE_Sign1 shape agrees with the strict decoder.

`protocol.dcc_cose` reads the shape nearly every issuer writes (tag 18, array of 4, byte
strings around an empty map) without a CBOR decoder, for speed. It may only ever decline
(and leave the input to the strict decoder), never read something the strict decoder reads
differently or refuses.
"""

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import dcc_pki as pki
from protocol import dcc_cose
from protocol.dcc_cose import ALG_ES256, ALG_PS256, parse_cose
from protocol.reasons import ProtocolError, Reason

_CA = pki.DccCa()
_SIGNERS = {alg: pki.make_signer(_CA, alg) for alg in (ALG_ES256, ALG_PS256)}


def _cose(alg: int = ALG_ES256, **options) -> bytes:
    payload = cbor2.dumps(pki.cwt(pki.vaccination()))
    return pki.sign_cose(_SIGNERS[alg], payload, **options)


def _strict(data: bytes) -> list | ProtocolError:
    try:
        return dcc_cose._strict_sign1(data)
    except ProtocolError as exc:
        return exc


@pytest.mark.parametrize("alg", [ALG_ES256, ALG_PS256])
@pytest.mark.parametrize("tagged", [True, False])
def test_the_usual_shape_is_read_byte_for_byte_and_equals_the_strict_reading(
    alg: int, tagged: bool
) -> None:
    data = _cose(alg, tagged=tagged)
    usual = dcc_cose._usual_sign1(data)
    assert usual is not None
    assert usual == _strict(data)
    msg = parse_cose(data)
    assert (msg.alg, msg.kid, msg.signature) == (alg, _SIGNERS[alg].kid, usual[3])


def test_other_shapes_are_left_to_the_strict_decoder() -> None:
    with_unprotected_kid = _cose(kid_in="unprotected")
    assert dcc_cose._usual_sign1(with_unprotected_kid) is None
    assert parse_cose(with_unprotected_kid).kid == _SIGNERS[ALG_ES256].kid
    data = _cose()
    assert dcc_cose._usual_sign1(data + b"\x00") is None  # trailing byte
    with pytest.raises(ProtocolError) as refused:
        parse_cose(data + b"\x00")
    assert refused.value.reason is Reason.BAD_CBOR
    assert dcc_cose._usual_sign1(data[:-1]) is None  # cut short
    with pytest.raises(ProtocolError):
        parse_cose(data[:-1])


def test_a_long_form_length_reads_the_same_both_ways() -> None:
    """CBOR allows a longer length head than needed; both readers must agree on it."""
    protected = cbor2.dumps({1: ALG_ES256, 4: b"12345678"})
    data = (
        b"\xd2\x84"
        + b"\x59\x00"
        + bytes((len(protected),))
        + protected
        + b"\xa0\x58\x03abc"
        + b"\x58\x40"
        + b"s" * 64
    )
    assert dcc_cose._usual_sign1(data) == _strict(data)
    assert parse_cose(data).payload == b"abc"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    base=st.sampled_from([_cose(), _cose(ALG_PS256), _cose(tagged=False)]),
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 2000),
)
def test_whatever_the_fast_reader_accepts_the_strict_decoder_reads_identically(
    base: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    mutated = bytes(data[: max(1, len(data) - cut % 8)])
    usual = dcc_cose._usual_sign1(mutated)
    if usual is not None:
        assert usual == _strict(mutated)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_from_the_fast_reader(data: bytes) -> None:
    usual = dcc_cose._usual_sign1(data)
    assert usual is None or usual == _strict(data)
