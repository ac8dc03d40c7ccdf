"""One test per reason code, each built by mutating a good pass."""

import zlib

import cbor2
import pytest
from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.base45 import b45encode
from protocol.clock import Clock, ClockState
from protocol.documents import check_newer, open_document
from protocol.pass_v1 import PREFIX, decode_pass, encode_cose, pass_ref, qr_to_cose, verify_pass
from protocol.reasons import ProtocolError, Reason, Verdict
from protocol.trust import TRUST_TYPE, open_revocation_list, sign_revocation_list
from tests.protocol.conftest import NOW, make_pki


def wrap(cose_bytes: bytes) -> str:
    return PREFIX + b45encode(zlib.compress(cose_bytes))


def resign(pki, protected: dict, unprotected: dict, payload: bytes, key=None) -> bytes:
    """A COSE_Sign1 with chosen headers, validly signed, to test header rules alone."""
    key = key or pki.issuer
    prot = cbor.dumps(protected)
    sig = key.sign(cose.sig_structure(prot, payload)).signature
    return cbor.dumps(cbor2.CBORTag(18, [prot, unprotected, payload, sig]))


def parts(pki, **changes):
    raw = encode_cose(pki.claims(**changes), pki.issuer)
    return cose.parse_sign1(raw)


def check(pki, text: str, reason: Reason, *, clock=None, **kwargs):
    result = verify_pass(text, pki.trust, clock or Clock.synced(NOW), **kwargs)
    assert result.reason is reason, (result.reason, result.detail)
    return result


def test_good_pass_is_green(pki):
    result = check(pki, pki.qr(), Reason.OK)
    assert result.verdict is Verdict.PASS


def test_not_chot(pki):
    check(pki, "HC1:" + pki.qr()[6:], Reason.NOT_CHOT)
    check(pki, "https://example.org/some-other-qr", Reason.NOT_CHOT)


def test_bad_base45_truncated(pki):
    text = pki.qr()
    # drop one character: the length becomes 1 mod 3 or a triplet breaks
    for cut in (1, 2):
        result = verify_pass(text[:-cut], pki.trust, Clock.synced(NOW))
        assert result.reason in (Reason.BAD_BASE45, Reason.BAD_ZLIB)
    check(pki, PREFIX + "ab", Reason.BAD_BASE45)  # lower case is not base45
    check(pki, PREFIX + "A", Reason.BAD_BASE45)  # dangling character
    check(pki, PREFIX + ":::", Reason.BAD_BASE45)  # triplet over 65535


def test_bad_zlib(pki):
    check(pki, PREFIX + b45encode(b"not a zlib stream"), Reason.BAD_ZLIB)
    stream = zlib.compress(qr_to_cose(pki.qr()))
    check(pki, PREFIX + b45encode(stream[:-6]), Reason.BAD_ZLIB)  # truncated
    check(pki, PREFIX + b45encode(stream + b"\x00"), Reason.BAD_ZLIB)  # trailing bytes


def test_zlib_bomb_is_too_large(pki):
    bomb = zlib.compress(b"\x00" * 10_000_000, 9)
    assert len(bomb) < 12_000
    result = check(pki, PREFIX + b45encode(bomb), Reason.TOO_LARGE)
    assert result.verdict is Verdict.FAIL


def test_bad_cbor(pki):
    check(pki, wrap(b"\xff\xff\xff"), Reason.BAD_CBOR)
    check(pki, wrap(qr_to_cose(pki.qr()) + b"\x00"), Reason.BAD_CBOR)  # trailing bytes
    check(pki, wrap(cbor2.dumps(cbor2.CBORTag(1, 5))), Reason.BAD_CBOR)  # foreign tag


def test_bad_cose_structure(pki):
    check(pki, wrap(cbor.dumps([1, 2, 3])), Reason.BAD_COSE)
    msg = parts(pki)
    short_sig = cbor.dumps(cbor2.CBORTag(18, [msg.protected_bytes, {}, msg.payload, b"x" * 63]))
    check(pki, wrap(short_sig), Reason.BAD_COSE)


def test_kid_only_in_unprotected_header_is_refused(pki):
    msg = parts(pki)
    raw = resign(pki, {1: -8}, {4: cose.kid_for(bytes(pki.issuer.verify_key))}, msg.payload)
    result = check(pki, wrap(raw), Reason.BAD_COSE)
    assert "unprotected" in result.detail


def test_missing_kid(pki):
    raw = resign(pki, {1: -8}, {}, parts(pki).payload)
    check(pki, wrap(raw), Reason.BAD_COSE)


def test_bad_alg(pki):
    kid = cose.kid_for(bytes(pki.issuer.verify_key))
    for alg in (-7, -35, "EdDSA", None):
        raw = resign(pki, {1: alg, 4: kid}, {}, parts(pki).payload)
        check(pki, wrap(raw), Reason.BAD_ALG)


def test_unknown_kid(pki):
    stranger = SigningKey.generate()
    check(pki, pki.qr(key=stranger), Reason.UNKNOWN_KID)


def test_flipped_signature_bit(pki):
    raw = bytearray(qr_to_cose(pki.qr()))
    raw[-1] ^= 0x01
    check(pki, wrap(bytes(raw)), Reason.BAD_SIGNATURE)


def test_forged_payload_with_trusted_kid(pki):
    # signed by a stranger but claiming the trusted issuer's kid
    kid = cose.kid_for(bytes(pki.issuer.verify_key))
    payload = parts(pki).payload
    raw = resign(pki, {1: -8, 4: kid}, {}, payload, key=SigningKey.generate())
    check(pki, wrap(raw), Reason.BAD_SIGNATURE)


def test_bad_claims(pki):
    kid = cose.kid_for(bytes(pki.issuer.verify_key))
    good = cbor2.loads(parts(pki).payload)
    mutations = [
        lambda c: c.pop(4),  # no exp
        lambda c: c.__setitem__(1, 42),  # iss not text
        lambda c: c.__setitem__(7, b"short"),  # cti not 16 bytes
        lambda c: c[-70001].__setitem__("kind", "party"),
        lambda c: c[-70001].__setitem__("dob", "1985"),
        lambda c: c[-70001].pop("sub"),
        lambda c: c.__setitem__(4, c[6] - 1),  # exp before iat
    ]
    for mutate in mutations:
        claims = cbor2.loads(parts(pki).payload) if mutate is None else dict(good)
        claims[-70001] = dict(good[-70001])
        mutate(claims)
        raw = resign(pki, {1: -8, 4: kid}, {}, cbor.dumps(claims))
        check(pki, wrap(raw), Reason.BAD_CLAIMS)


def test_unknown_claims_are_ignored(pki):
    kid = cose.kid_for(bytes(pki.issuer.verify_key))
    claims = cbor2.loads(parts(pki).payload)
    claims[-70002] = "future"
    claims[-70001]["future"] = [1, 2]
    check(pki, wrap(resign(pki, {1: -8, 4: kid}, {}, cbor.dumps(claims))), Reason.OK)


def test_issuer_mismatch(pki):
    check(pki, pki.qr(iss="VN-SG"), Reason.ISSUER_MISMATCH)


def test_kind_not_allowed_by_issuer_or_site(pki):
    check(pki, pki.qr(kind="recovery"), Reason.KIND_NOT_ALLOWED)  # issuer may not issue it
    check(pki, pki.qr(kind="vaccination"), Reason.KIND_NOT_ALLOWED, allowed_kinds={"declaration"})


def test_expired_and_not_yet_valid(pki):
    check(pki, pki.qr(iat=NOW - 80 * 3600, exp=NOW - 8 * 3600), Reason.EXPIRED)
    check(pki, pki.qr(iat=NOW + 3600, exp=NOW + 75 * 3600), Reason.NOT_YET_VALID)
    check(pki, pki.qr(iat=NOW + 60, exp=NOW + 72 * 3600), Reason.OK)  # inside skew
    check(pki, pki.qr(iat=NOW + 60), Reason.NOT_YET_VALID, skew_s=0)
    check(pki, pki.qr(nbf=NOW + 7200), Reason.NOT_YET_VALID)


def test_revoked_pass_and_revoked_issuer(pki):
    claims = pki.claims()
    from protocol.pass_v1 import encode_pass

    text = encode_pass(claims, pki.issuer)
    raw = sign_revocation_list(
        pass_refs=[pass_ref(claims.cti)],
        version=1,
        issued_at=NOW - 60,
        expires_at=NOW + 86400,
        root_key=pki.root,
    )
    revocations = open_revocation_list(raw, pki.keyring)
    check(pki, text, Reason.REVOKED, revocations=revocations)
    check(pki, pki.qr(), Reason.OK, revocations=revocations)
    kid = cose.kid_for(bytes(pki.issuer.verify_key))
    raw = sign_revocation_list(
        kids=[kid], version=2, issued_at=NOW - 60, expires_at=NOW + 86400, root_key=pki.root
    )
    check(pki, pki.qr(), Reason.REVOKED, revocations=open_revocation_list(raw, pki.keyring))


def test_stale_trust_list_is_amber_not_green():
    pki = make_pki(trust_exp=NOW - 1)
    result = check(pki, pki.qr(), Reason.TRUST_STALE)
    assert result.verdict is Verdict.WARN


def test_no_trust_list_is_amber(pki):
    result = verify_pass(pki.qr(), None, Clock.synced(NOW))
    assert (result.verdict, result.reason) == (Verdict.WARN, Reason.NO_TRUST_LIST)


def test_unknown_clock_is_never_green(pki):
    result = check(pki, pki.qr(), Reason.CLOCK_UNTRUSTED, clock=Clock(NOW, ClockState.UNKNOWN))
    assert result.verdict is Verdict.WARN


def test_bounded_clock_proves_expiry_but_never_validity(pki):
    bounded = Clock(NOW, ClockState.BOUNDED, lower_bound=NOW)
    check(pki, pki.qr(), Reason.CLOCK_UNTRUSTED, clock=bounded)
    check(pki, pki.qr(iat=NOW - 80 * 3600, exp=NOW - 8 * 3600), Reason.EXPIRED, clock=bounded)
    # a device clock years in the future with no sync cannot expire a pass on its own say-so
    future = Clock(NOW + 10 * 365 * 86400, ClockState.UNKNOWN)
    check(pki, pki.qr(), Reason.CLOCK_UNTRUSTED, clock=future)


def test_rolled_back_trust_list_is_refused():
    pki = make_pki(trust_version=5)
    from protocol.trust import IssuerKey, sign_trust_list

    current = open_document(pki.trust_bytes, TRUST_TYPE, pki.keyring)
    entry = IssuerKey("VN-HN", bytes(pki.issuer.verify_key))
    older = sign_trust_list(
        [entry], version=4, issued_at=NOW, expires_at=NOW + 9, root_key=pki.root
    )
    same_version = sign_trust_list(
        [entry], version=5, issued_at=NOW, expires_at=NOW + 9, root_key=pki.root
    )
    newer = sign_trust_list(
        [entry], version=6, issued_at=NOW, expires_at=NOW + 9, root_key=pki.root
    )
    for raw in (older, same_version):
        with pytest.raises(ProtocolError) as err:
            check_newer(open_document(raw, TRUST_TYPE, pki.keyring), current)
        assert err.value.reason is Reason.ROLLBACK
    assert check_newer(open_document(pki.trust_bytes, TRUST_TYPE, pki.keyring), current) is False
    assert check_newer(open_document(newer, TRUST_TYPE, pki.keyring), current) is True


def test_trust_list_signed_by_another_root_is_refused(pki):
    other = make_pki()
    with pytest.raises(ProtocolError) as err:
        open_document(other.trust_bytes, TRUST_TYPE, pki.keyring)
    assert err.value.reason is Reason.UNKNOWN_KID


def test_decode_pass_without_trust_reports_structure(pki):
    decoded = decode_pass(pki.qr())
    assert decoded.kid == cose.kid_for(bytes(pki.issuer.verify_key))
    assert decoded.claims.kind == "declaration"
