"""The fixed vectors from shared/: byte-exact encoding, decoding and verdicts."""

import json

import pytest
from nacl.signing import SigningKey

from harness.vectors import load_vector
from protocol import cose
from protocol.clock import Clock
from protocol.pass_v1 import PassClaims, encode_cose, qr_to_cose, verify_pass
from protocol.trust import IssuerKey, TrustList


def load(name: str) -> dict:
    return load_vector(name)


@pytest.fixture(scope="module")
def vector() -> dict:
    return load("chot-pass-v1.json")


def vector_claims() -> PassClaims:
    return PassClaims(
        iss="VN-HN",
        iat=1630454400,
        exp=1630713600,
        cti=bytes.fromhex("00112233445566778899aabbccddeeff"),
        sub=bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
        kind="declaration",
        doc4="6789",
        dob=1985,
    )


def vector_trust(vector: dict) -> TrustList:
    public = bytes.fromhex(vector["issuer_public_hex"])
    return TrustList(1, 0, 2**40, {cose.kid_for(public): IssuerKey("VN-HN", public)})


def test_kid_is_sha256_prefix_of_public_key(vector):
    key = SigningKey(bytes.fromhex(vector["issuer_seed_hex"]))
    assert bytes(key.verify_key).hex() == vector["issuer_public_hex"]
    assert cose.kid_for(bytes(key.verify_key)).hex() == vector["kid_hex"]


def test_encoder_reproduces_cose_bytes_exactly(vector):
    key = SigningKey(bytes.fromhex(vector["issuer_seed_hex"]))
    assert encode_cose(vector_claims(), key).hex() == vector["cose_hex"]


def test_decoder_recovers_cose_bytes_from_qr_text(vector):
    assert qr_to_cose(vector["qr_text"]).hex() == vector["cose_hex"]


def test_listed_verdicts_at_listed_times(vector):
    trust = vector_trust(vector)
    for check in vector["checks"]:
        result = verify_pass(vector["qr_text"], trust, Clock.synced(check["at"]))
        assert result.verdict.value == check["verdict"], check
        if "reason" in check:
            assert check["reason"].startswith(result.reason.value), (check, result.reason)
        assert result.pass_ref.hex() == vector["pass_ref_hex"]


def test_public_dict_carries_no_personal_data(vector):
    result = verify_pass(vector["qr_text"], vector_trust(vector), Clock.synced(1630458000))
    assert result.claims.doc4 == "6789" and result.claims.dob == 1985
    public = json.dumps(result.public_dict())
    assert "6789" not in public and "1985" not in public
    assert result.public_dict()["pass_ref"] == vector["pass_ref_hex"]


def test_cose_working_group_eddsa_example_verifies():
    example = load("cose-wg-eddsa-sig-01.json")
    msg = cose.parse_sign1(bytes.fromhex(example["output"]["cbor"]))
    assert msg.to_be_signed().hex().upper() == example["intermediates"]["ToBeSign_hex"]
    public = bytes.fromhex(example["input"]["sign0"]["key"]["x_hex"])
    assert msg.verify(public)
    assert msg.payload == example["input"]["plaintext"].encode()
    # its kid is in the unprotected header only: fine for COSE, refused by chot pass rules
    assert msg.kid is None and msg.unprotected[4] == b"11"
    tampered = bytes.fromhex(example["output"]["cbor"].replace("636F6E74656E74", "636F6E74656E75"))
    assert not cose.parse_sign1(tampered).verify(public)
