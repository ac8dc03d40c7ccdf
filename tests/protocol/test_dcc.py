"""EU Digital COVID Certificates: the decode chain, the DSC rules and the verdicts, with
certificates made by a test CA (harness/dcc_pki.py), ES256 and PS256 alike."""

import zlib
from dataclasses import dataclass

import cbor2
import pytest

from harness import dcc_pki as pki
from harness.dcc_pki import DAY, NOW
from protocol.base45 import b45encode
from protocol.clock import Clock, ClockState
from protocol.dcc import ALG_ES256, ALG_PS256, decode_dcc, pseudonym, verify_dcc
from protocol.dcc_trust import DccTrust, direct_trust
from protocol.reasons import Reason, Verdict
from protocol.trust import RevocationList


@dataclass
class DccPki:
    ca: pki.DccCa
    es: pki.Signer
    ps: pki.Signer
    trust: DccTrust


@pytest.fixture(scope="module")
def dcc() -> DccPki:
    ca = pki.DccCa()
    es, ps = pki.make_signer(ca, ALG_ES256), pki.make_signer(ca, ALG_PS256)
    trust = DccTrust(1, NOW - DAY, NOW + 7 * DAY, direct_trust([es.der, ps.der]).dscs, b"k" * 32)
    return DccPki(ca, es, ps, trust)


def verify(text: str, trust: DccTrust | None, at: int = NOW, **kwargs):
    return verify_dcc(text, trust, Clock.synced(at), **kwargs)


def payload(hcert=None, **cwt) -> bytes:
    return cbor2.dumps(pki.cwt(pki.vaccination() if hcert is None else hcert, **cwt))


KINDS = {"vaccination": pki.vaccination, "test": pki.lab_test, "recovery": pki.recovery}


@pytest.mark.parametrize("alg", [ALG_ES256, ALG_PS256], ids=["ES256", "PS256"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_type_passes_with_each_algorithm(dcc, alg, kind):
    signer = dcc.es if alg == ALG_ES256 else dcc.ps
    result = verify(pki.make_dcc(signer, KINDS[kind]()), dcc.trust)
    assert result.verdict is Verdict.PASS, result.detail
    assert result.public_dict()["format"] == "dcc"
    assert result.public_dict()["kind"] == kind
    assert result.kid == signer.kid


def test_public_output_and_pseudonym_hold_no_personal_data(dcc):
    hcert = pki.vaccination()
    result = verify(pki.make_dcc(dcc.es, hcert), dcc.trust)
    ci = hcert["v"][0]["ci"]
    public = repr(result.public_dict())
    for secret in (ci, "NGUYEN", "Nguy", "1985-04-12"):
        assert secret not in public
    assert result.claims.sub == pseudonym(b"k" * 32, ci)
    assert result.claims.sub != pseudonym(b"j" * 32, ci)  # keyed: another key, another name
    assert len(result.claims.sub) == 16 and ci.encode() not in result.claims.sub
    assert result.certificate.ci == ci  # kept on the device for a screen, nothing else


def test_reference_ignores_the_malleable_half_of_an_ecdsa_signature(dcc):
    """(r, s) and (r, n - s) both verify: the reference must not change with s."""
    from cryptography.hazmat.primitives.asymmetric import ec

    n = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
    cose = pki.sign_cose(dcc.es, payload())
    tag = cbor2.loads(cose)
    sig = tag.value[3]
    s = int.from_bytes(sig[32:], "big")
    flipped = sig[:32] + (n - s).to_bytes(32, "big")
    twin = cbor2.dumps(cbor2.CBORTag(18, [*tag.value[:3], flipped]))
    first, second = verify(pki.to_qr(cose), dcc.trust), verify(pki.to_qr(twin), dcc.trust)
    assert first.verdict is second.verdict is Verdict.PASS
    assert first.pass_ref == second.pass_ref
    assert isinstance(dcc.es.key, ec.EllipticCurvePrivateKey)


# --- the decode chain, step by step -----------------------------------------------------------


def test_bad_prefix_is_not_chot(dcc):
    text = pki.make_dcc(dcc.es)
    for bad in ("HC2:" + text[4:], "hc1:" + text[4:], text[4:], ""):
        assert verify(bad, dcc.trust).reason is Reason.NOT_CHOT


def test_bad_base45(dcc):
    text = pki.make_dcc(dcc.es)
    assert verify(text + "a", dcc.trust).reason is Reason.BAD_BASE45
    assert verify("HC1:" + "A", dcc.trust).reason is Reason.BAD_BASE45
    assert verify("HC1:GGW", dcc.trust).reason is Reason.BAD_BASE45  # triplet > 0xFFFF


def test_uncompressed_cose_is_refused(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload()), compress=False)
    assert verify(text, dcc.trust).reason is Reason.BAD_ZLIB


def test_truncated_zlib_and_zip_bomb(dcc):
    compressed = zlib.compress(pki.sign_cose(dcc.es, payload()))
    assert verify("HC1:" + b45encode(compressed[:-5]), dcc.trust).reason is Reason.BAD_ZLIB
    bomb = "HC1:" + b45encode(zlib.compress(b"\x00" * 100_000))
    assert verify(bomb, dcc.trust).reason is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "cose",
    [b"\xff", cbor2.dumps([1, 2]) + b"\x00", cbor2.dumps(cbor2.CBORTag(61, [b"", {}, b"", b""]))],
    ids=["not-cbor", "trailing", "cwt-tag"],
)
def test_wrong_cbor(dcc, cose):
    assert verify(pki.to_qr(cose), dcc.trust).reason is Reason.BAD_CBOR


@pytest.mark.parametrize(
    "item",
    [[1, 2, 3], {"a": 1}, [b"", {}, b"x", "sig"], [b"\x01", {}, b"x", b"s" * 64]],
    ids=["short", "map", "text-signature", "protected-not-cbor-map"],
)
def test_wrong_cose_shape(dcc, item):
    assert verify(pki.to_qr(cbor2.dumps(item)), dcc.trust).reason in (
        Reason.BAD_COSE,
        Reason.BAD_CBOR,
    )


def test_untagged_cose_is_accepted(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), tagged=False))
    assert verify(text, dcc.trust).verdict is Verdict.PASS


def test_kid_missing(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), kid_in="none"))
    assert verify(text, dcc.trust).reason is Reason.BAD_COSE


def test_kid_only_unprotected_is_used(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), kid_in="unprotected"))
    result = verify(text, dcc.trust)
    assert result.verdict is Verdict.PASS and result.kid == dcc.es.kid


def test_protected_kid_wins_over_unprotected(dcc):
    """`both` puts the right kid in the protected header and zeros in the unprotected one."""
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), kid_in="both"))
    assert verify(text, dcc.trust).kid == dcc.es.kid


def test_wrong_kid(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), kid=b"\x01" * 8))
    assert verify(text, dcc.trust).reason is Reason.UNKNOWN_KID
    # the kid of the other DSC: the signature cannot verify under the wrong key
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), kid=dcc.ps.kid, alg=ALG_ES256))
    assert verify(text, dcc.trust).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", [-8, -35, -36, -38, 1, "ES256", True])
def test_wrong_algorithm(dcc, alg):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), alg=alg))
    assert verify(text, dcc.trust).reason is Reason.BAD_ALG


def test_algorithm_only_in_the_unprotected_header(dcc):
    text = pki.to_qr(pki.sign_cose(dcc.es, payload(), no_alg=True))
    assert verify(text, dcc.trust).reason is Reason.BAD_ALG


def test_bad_signature(dcc):
    for signer in (dcc.es, dcc.ps):
        text = pki.to_qr(pki.sign_cose(signer, payload(), tamper=True))
        assert verify(text, dcc.trust).reason is Reason.BAD_SIGNATURE


def test_payload_changed_after_signing(dcc):
    tag = cbor2.loads(pki.sign_cose(dcc.es, payload()))
    forged = payload(pki.vaccination(dn=3, sd=3))
    text = pki.to_qr(cbor2.dumps(cbor2.CBORTag(18, [tag.value[0], {}, forged, tag.value[3]])))
    assert verify(text, dcc.trust).reason is Reason.BAD_SIGNATURE


def test_alg_that_does_not_match_the_dsc_key(dcc):
    """A PS256 header with the kid of the EC DSC: refused, never verified with the wrong scheme."""
    text = pki.to_qr(pki.sign_cose(dcc.ps, payload(), kid=dcc.es.kid))
    assert verify(text, dcc.trust).reason is Reason.BAD_SIGNATURE


def test_expired_and_not_yet_valid(dcc):
    text = pki.make_dcc(dcc.es, exp=NOW - 1, iat=NOW - 400 * DAY)
    assert verify(text, dcc.trust).reason is Reason.EXPIRED
    text = pki.make_dcc(dcc.es, iat=NOW + DAY, exp=NOW + 300 * DAY)
    assert verify(text, dcc.trust).reason is Reason.NOT_YET_VALID


def test_no_trust_is_amber(dcc):
    result = verify(pki.make_dcc(dcc.es), None)
    assert (result.verdict, result.reason) == (Verdict.WARN, Reason.NO_TRUST_LIST)
    assert result.claims.sub == b""  # no key, no pseudonym


def test_trust_list_past_its_age_is_amber(dcc):
    result = verify(pki.make_dcc(dcc.es), dcc.trust, at=NOW + 8 * DAY)
    assert (result.verdict, result.reason) == (Verdict.WARN, Reason.TRUST_STALE)


def test_clock_rules(dcc):
    text = pki.make_dcc(dcc.es)
    assert verify_dcc(text, dcc.trust, Clock(NOW, ClockState.UNKNOWN)).verdict is Verdict.WARN
    bounded = Clock(NOW, ClockState.BOUNDED, NOW)
    assert verify_dcc(text, dcc.trust, bounded).reason is Reason.CLOCK_UNTRUSTED
    late = Clock(NOW, ClockState.BOUNDED, NOW + 400 * DAY)  # provably past the DSC's end
    assert verify_dcc(text, dcc.trust, late).reason is Reason.DSC_NOT_IN_FORCE


# --- DSC validity and key usage ----------------------------------------------------------------


def test_dsc_out_of_validity(dcc):
    old = pki.make_signer(dcc.ca, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    future = pki.make_signer(dcc.ca, ALG_ES256, not_before=NOW + DAY, not_after=NOW + 9 * DAY)
    trust = direct_trust([old.der, future.der])
    for signer in (old, future):
        result = verify(pki.make_dcc(signer), trust)
        assert (result.verdict, result.reason) == (Verdict.FAIL, Reason.DSC_NOT_IN_FORCE)


@pytest.mark.parametrize("oids", [pki.EKU_OIDS, pki.EKU_OIDS_ALT], ids=["1847", "0.1847"])
def test_eku_limits_what_a_dsc_may_sign(dcc, oids):
    vacc_only = pki.make_signer(dcc.ca, eku=(oids["vaccination"],))
    trust = direct_trust([vacc_only.der])
    assert verify(pki.make_dcc(vacc_only, pki.vaccination()), trust).verdict is Verdict.PASS
    for hcert in (pki.lab_test(), pki.recovery()):
        assert verify(pki.make_dcc(vacc_only, hcert), trust).reason is Reason.DSC_KIND_NOT_ALLOWED


def test_eku_without_hcert_oids_allows_all_types(dcc):
    other = pki.make_signer(dcc.ca, eku=("1.3.6.1.5.5.7.3.4",))  # emailProtection only
    trust = direct_trust([other.der])
    for make in KINDS.values():
        assert verify(pki.make_dcc(other, make()), trust).verdict is Verdict.PASS


# --- schema ------------------------------------------------------------------------------------


def _bad(hcert_change):
    hcert = pki.vaccination()
    hcert_change(hcert)
    return hcert


SCHEMA_VIOLATIONS = {
    "two-groups": lambda h: h.update(t=pki.lab_test()["t"]),
    "no-group": lambda h: h.pop("v"),
    "two-entries": lambda h: h.update(v=h["v"] * 2),
    "empty-group": lambda h: h.update(v=[]),
    "dn-text": lambda h: h["v"][0].update(dn="2"),
    "dn-zero": lambda h: h["v"][0].update(dn=0),
    "dn-bool": lambda h: h["v"][0].update(dn=True),
    "no-ci": lambda h: h["v"][0].pop("ci"),
    "long-ci": lambda h: h["v"][0].update(ci="U" * 81),
    "bad-date": lambda h: h["v"][0].update(dt="2022-13-01"),
    "date-time-as-date": lambda h: h["v"][0].update(dt="2022-01-10T00:00:00Z"),
    "no-nam": lambda h: h.pop("nam"),
    "no-fnt": lambda h: h["nam"].pop("fnt"),
    "no-dob": lambda h: h.pop("dob"),
    "no-ver": lambda h: h.pop("ver"),
    "tg-int": lambda h: h["v"][0].update(tg=840539006),
}


@pytest.mark.parametrize("change", SCHEMA_VIOLATIONS.values(), ids=SCHEMA_VIOLATIONS.keys())
def test_schema_violations(dcc, change):
    assert verify(pki.make_dcc(dcc.es, _bad(change)), dcc.trust).reason is Reason.BAD_CLAIMS


@pytest.mark.parametrize(
    "claims",
    [
        {1: "VN", 6: NOW, 4: NOW + 1},  # no -260
        {1: "VN", 6: NOW, 4: NOW + 1, -260: {2: pki.vaccination()}},  # not v1
        {1: "VN", 4: NOW + 1, -260: {1: pki.vaccination()}},  # no iat
        {1: "VN", 6: NOW, 4: NOW - 1, -260: {1: pki.vaccination()}},  # exp < iat
        {1: 7, 6: NOW, 4: NOW + 1, -260: {1: pki.vaccination()}},  # iss not text
        [1, 2],
    ],
)
def test_cwt_violations(dcc, claims):
    text = pki.to_qr(pki.sign_cose(dcc.es, cbor2.dumps(claims)))
    assert verify(text, dcc.trust).reason is Reason.BAD_CLAIMS


def test_test_sample_time_needs_a_zone(dcc):
    hcert = pki.lab_test(sc="2022-02-28T12:00:00")
    assert verify(pki.make_dcc(dcc.es, hcert), dcc.trust).reason is Reason.BAD_CLAIMS


def test_revocation_by_reference_and_by_kid(dcc):
    text = pki.make_dcc(dcc.es)
    ref = decode_dcc(text)
    result = verify(text, dcc.trust)
    by_ref = RevocationList(1, NOW, NOW + DAY, result.pass_ref)
    by_kid = RevocationList(1, NOW, NOW + DAY, kids=frozenset({ref.kid}))
    assert verify(text, dcc.trust, revocations=by_ref).reason is Reason.REVOKED
    assert verify(text, dcc.trust, revocations=by_kid).reason is Reason.REVOKED


@pytest.mark.parametrize("protected_len", [0, 13, 23, 24, 255, 256])
@pytest.mark.parametrize("payload_len", [0, 23, 24, 300, 65535, 65536])
def test_sig_structure_written_by_hand_is_the_encoders(protected_len, payload_len):
    """DccSign1.to_be_signed skips the CBOR encoder: it must give the very same bytes."""
    from protocol import cose
    from protocol.dcc import DccSign1

    msg = DccSign1(b"p" * protected_len, ALG_ES256, b"k" * 8, b"x" * payload_len, b"s" * 64)
    assert msg.to_be_signed() == cose.sig_structure(msg.protected_bytes, msg.payload)
