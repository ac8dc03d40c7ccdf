"""The DCC trust list document and certificate files: signed by the ops root, versioned,
rollback refused, every malformed entry refused, national lists checked kid by kid."""

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from nacl.signing import SigningKey

from harness import dcc_pki as pki
from harness.dcc_pki import DAY, NOW
from protocol import cbor, cose
from protocol.clock import Clock
from protocol.dcc import ALG_PS256, verify_dcc
from protocol.dcc_trust import (
    DCC_TRUST_TYPE,
    dcc_trust_topic,
    dsc_from_der,
    dsc_kid,
    open_dcc_trust_list,
    read_certificate,
    read_national_list,
    sign_dcc_trust_list,
)
from protocol.documents import check_newer, open_document, sign_document
from protocol.reasons import ProtocolError, Reason, Verdict
from protocol.trust import root_keyring


@pytest.fixture(scope="module")
def signers() -> list[pki.Signer]:
    ca = pki.DccCa()
    return [pki.make_signer(ca), pki.make_signer(ca, ALG_PS256)]


@pytest.fixture(scope="module")
def root() -> SigningKey:
    return SigningKey.generate()


def sign(signers, root, version=1, **kwargs):
    return sign_dcc_trust_list(
        [s.der for s in signers],
        pseudonym_key=kwargs.pop("psk", b"p" * 32),
        version=version,
        issued_at=kwargs.pop("issued_at", NOW - DAY),
        expires_at=kwargs.pop("expires_at", NOW + 7 * DAY),
        root_key=root,
    )


def test_round_trip_and_verify(signers, root):
    keys = root_keyring([bytes(root.verify_key)])
    trust = open_dcc_trust_list(sign(signers, root), keys)
    assert set(trust.dscs) == {s.kid for s in signers}
    assert trust.pseudonym_key == b"p" * 32 and trust.version == 1
    for s in signers:
        result = verify_dcc(pki.make_dcc(s), trust, Clock.synced(NOW))
        assert result.verdict is Verdict.PASS


def test_kid_is_sha256_of_the_der_certificate(signers):
    import hashlib

    for s in signers:
        assert dsc_kid(s.der) == hashlib.sha256(s.der).digest()[:8] == dsc_from_der(s.der).kid


def test_other_root_and_wrong_type_are_refused(signers, root):
    data = sign(signers, root)
    with pytest.raises(ProtocolError) as err:
        open_dcc_trust_list(data, root_keyring([bytes(SigningKey.generate().verify_key)]))
    assert err.value.reason is Reason.UNKNOWN_KID
    chot_trust = sign_document("chot-trust", 1, NOW, NOW + DAY, {"issuers": []}, root)
    with pytest.raises(ProtocolError) as err:
        open_dcc_trust_list(chot_trust, root_keyring([bytes(root.verify_key)]))
    assert err.value.reason is Reason.WRONG_TYPE


@pytest.mark.parametrize(
    "body",
    [
        {"dscs": [b"not a certificate"], "psk": b"p" * 32},
        {"dscs": "x", "psk": b"p" * 32},
        {"dscs": [], "psk": b"short"},
        {"dscs": []},
    ],
)
def test_malformed_bodies_are_refused(root, body):
    data = sign_document(DCC_TRUST_TYPE, 1, NOW, NOW + DAY, body, root)
    with pytest.raises(ProtocolError) as err:
        open_dcc_trust_list(data, root_keyring([bytes(root.verify_key)]))
    assert err.value.reason is Reason.BAD_CLAIMS


def test_rollback_is_refused(signers, root):
    keys = root_keyring([bytes(root.verify_key)])
    v2 = open_document(sign(signers, root, version=2), DCC_TRUST_TYPE, keys)
    v1 = open_document(sign(signers[:1], root, version=1), DCC_TRUST_TYPE, keys)
    v2b = open_document(sign(signers[:1], root, version=2), DCC_TRUST_TYPE, keys)
    for older in (v1, v2b):
        with pytest.raises(ProtocolError) as err:
            check_newer(older, v2)
        assert err.value.reason is Reason.ROLLBACK


def test_signing_refuses_what_a_verifier_would_refuse(root):
    with pytest.raises(ValueError):
        sign_dcc_trust_list(
            [b"junk"], pseudonym_key=b"p" * 32, version=1, issued_at=1, expires_at=2, root_key=root
        )


def test_certificate_files_pem_base64_der(signers):
    der = signers[0].der
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    for data in (der, pem, base64.b64encode(der), base64.encodebytes(der)):
        assert read_certificate(data) == der
    for junk in (b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"):
        with pytest.raises(ValueError):
            read_certificate(junk)


def test_national_list(signers):
    items = [
        {"kid": base64.b64encode(s.kid).decode(), "rawData": base64.b64encode(s.der).decode()}
        for s in signers
    ]
    assert read_national_list(json.dumps(items).encode()) == [s.der for s in signers]
    wrapped = {"certificates": [{"certificate": items[0]["rawData"]}]}
    assert read_national_list(json.dumps(wrapped).encode()) == [signers[0].der]
    items[1]["kid"] = items[0]["kid"]
    with pytest.raises(ValueError, match="does not match"):
        read_national_list(json.dumps(items).encode())
    for junk in (b"{", b"{}", b"[1]", b'[{"kid": "AA=="}]'):
        with pytest.raises(ValueError):
            read_national_list(junk)


def test_dsc_on_another_curve_is_refused():
    from cryptography.hazmat.primitives.asymmetric import ec

    ca = pki.DccCa()
    der = ca.issue(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(ValueError, match="P-256"):
        dsc_from_der(der)


def test_topic():
    assert dcc_trust_topic("HN-01") == "chot/v1/HN-01/dcc-trust"
    with pytest.raises(ValueError):
        dcc_trust_topic("HN/01")


def test_document_is_deterministic_cbor(signers, root):
    data = sign(signers, root)
    payload = cbor.loads_strict(cose.parse_sign1(data).payload)
    assert payload["dscs"] == sorted(payload["dscs"], key=dsc_kid)
