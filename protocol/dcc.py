"""EU Digital COVID Certificates (eHealth Network hcert v1), decoded and verified offline.

    QR text = "HC1:" + base45(zlib(COSE_Sign1(CWT {1: iss, 4: exp, 6: iat, -260: {1: hcert}})))

The same building blocks as chot passes (strict base45, bounded zlib, strict CBOR, the RFC 9052
Sig_structure, the clock rule), but the signature is ES256 (-7) or PS256 (-37) by a Document
Signer Certificate (`dcc_trust`), checked with the `cryptography` package. `verify_dcc` is total:
for any input it returns a `DccResult` (a `PassResult`, so a unit treats both alike) and never
raises. Personal data (`nam`, `dob`, `ci`) stays in `DccResult.certificate`.
"""

import functools
import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocol import cbor
from protocol.clock import Clock, ClockState
from protocol.dcc_cose import (
    ALG_ES256,
    ALG_PS256,
    PREFIX,
    DccSign1,
    is_dcc,
    parse_cose,
    qr_to_cose,
)
from protocol.dcc_payload import DccCertificate, parse_hcert
from protocol.dcc_policy import DccPolicy, check_content, check_timing
from protocol.dcc_trust import DccTrust, Dsc
from protocol.pass_v1 import DEFAULT_SKEW_S, PassClaims, PassResult, check_time
from protocol.reasons import ProtocolError, Reason, verdict_for
from protocol.trust import RevocationList

__all__ = [  # the decoding half lives in dcc_cose; callers keep importing it from here
    "ALG_ES256",
    "ALG_PS256",
    "PREFIX",
    "DccSign1",
    "decode_dcc",
    "is_dcc",
    "parse_cose",
    "pass_ref_of",
    "pseudonym",
    "qr_to_cose",
    "verify_dcc",
]

CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_V1 = 1
_SUB_DOMAIN = b"chot-dcc-sub/v1\x00"
_SHA256 = hashes.SHA256()
_PSS = padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=padding.PSS.AUTO)
_DEFAULT_POLICY = DccPolicy()


@dataclass(frozen=True, slots=True)
class DccClaims:
    """The CWT claims of a DCC: `iss` (country, optional), `iat`, `exp` and the certificate."""

    iss: str
    iat: int
    exp: int
    certificate: DccCertificate


def parse_claims(payload: bytes) -> DccClaims:
    try:
        raw = cbor.loads_strict(payload)
    except ProtocolError:
        raise ProtocolError(Reason.BAD_CLAIMS, "payload is not CBOR") from None
    if type(raw) is not dict:
        raise ProtocolError(Reason.BAD_CLAIMS, "CWT claims must be a map")
    iss, iat, exp = raw.get(CLAIM_ISS, ""), raw.get(CLAIM_IAT), raw.get(CLAIM_EXP)
    if type(iss) is not str or len(iss) > 64:
        raise ProtocolError(Reason.BAD_CLAIMS, "iss must be short text")
    for name, value in (("iat", iat), ("exp", exp)):
        if type(value) is not int or value < 0:
            raise ProtocolError(Reason.BAD_CLAIMS, f"{name} must be a uint")
    if exp < iat:
        raise ProtocolError(Reason.BAD_CLAIMS, "exp before iat")
    hcert = raw.get(CLAIM_HCERT)
    if type(hcert) is not dict or HCERT_V1 not in hcert:
        raise ProtocolError(Reason.BAD_CLAIMS, "claim -260 needs the hcert v1 payload at key 1")
    return DccClaims(iss, iat, exp, parse_hcert(hcert[HCERT_V1]))


@dataclass(frozen=True, slots=True)
class DecodedDcc:
    """A DCC decoded without trust: structure checked, signature NOT checked."""

    msg: DccSign1
    claims: DccClaims

    @property
    def kid(self) -> bytes:
        return self.msg.kid


def decode_dcc(text: str) -> DecodedDcc:
    """Prefix -> base45 -> zlib -> CBOR -> COSE -> CWT -> hcert. Raises ProtocolError."""
    msg = parse_cose(qr_to_cose(text))
    return DecodedDcc(msg, parse_claims(msg.payload))


# --- signature --------------------------------------------------------------------------------


def signature_valid(msg: DccSign1, dsc: Dsc) -> bool:
    """ES256 over P-256 or PS256 over RSA, per the DSC's key. Never raises on bad input."""
    key: Any = dsc.public_key
    try:
        if msg.alg == ALG_ES256 and dsc.is_ec:
            r = int.from_bytes(msg.signature[:32], "big")
            s = int.from_bytes(msg.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), msg.to_be_signed(), ec.ECDSA(_SHA256))
            return True
        if msg.alg == ALG_PS256 and not dsc.is_ec:
            key.verify(msg.signature, msg.to_be_signed(), _PSS, _SHA256)
            return True
    except (InvalidSignature, ValueError, TypeError):
        return False
    return False  # alg and key type disagree


def pseudonym(key: bytes, ci: str) -> bytes:
    """The subject pseudonym events carry for a DCC: HMAC-SHA256(ops key, ci)[0:16]."""
    mac = _keyed_mac(key).copy()
    mac.update(ci.encode("utf-8"))
    return mac.digest()[:16]


@functools.lru_cache(maxsize=4)
def _keyed_mac(key: bytes) -> hmac.HMAC:
    """HMAC keyed once and copied per scan: a one-shot `hmac.digest` sets OpenSSL's context
    up each time, which cost ~10 us of a ~90 us verify in bench/bench_dcc.py."""
    return hmac.new(key, _SUB_DOMAIN, "sha256")


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DccResult(PassResult):
    """A `PassResult` for a DCC. `claims.sub` is the keyed pseudonym of `ci` (empty without a
    pseudonym key), `claims.cti` the signature material behind `pass_ref`. `certificate` holds
    personal data: keep it on the device."""

    certificate: DccCertificate | None = None
    format: str = "dcc"

    def public_dict(self) -> dict[str, Any]:
        return {**super().public_dict(), "format": self.format}


def verify_dcc(
    text: str,
    trust: DccTrust | None,
    clock: Clock,
    *,
    policy: DccPolicy | None = None,
    revocations: RevocationList | None = None,
    allowed_kinds: Collection[str] | None = None,
    skew_s: int = DEFAULT_SKEW_S,
) -> DccResult:
    """Decide one DCC offline. Total: never raises, whatever `text` is."""
    decoded: DecodedDcc | None = None
    try:
        decoded = decode_dcc(text)
        if trust is None:
            raise ProtocolError(Reason.NO_TRUST_LIST, "no DCC trust list installed")
        reason = _check_trusted(
            decoded, trust, clock, policy or _DEFAULT_POLICY, revocations, allowed_kinds, skew_s
        )
        return _result(reason, "", decoded, trust)
    except ProtocolError as exc:
        return _result(exc.reason, exc.detail, decoded, trust)
    except Exception as exc:  # a bug must still give a safe, red answer
        return _result(Reason.BAD_COSE, f"internal: {type(exc).__name__}", decoded, None)


def _result(
    reason: Reason, detail: str, decoded: DecodedDcc | None, trust: DccTrust | None
) -> DccResult:
    if decoded is None:
        return DccResult(verdict_for(reason), reason, detail)
    c = decoded.claims
    key = trust.pseudonym_key if trust is not None else None
    claims = PassClaims(
        iss=c.iss,
        iat=c.iat,
        exp=c.exp,
        cti=decoded.msg.ref_material,
        sub=pseudonym(key, c.certificate.ci) if key else b"",
        kind=c.certificate.kind,
    )
    return DccResult(
        verdict_for(reason), reason, detail, claims, decoded.kid, certificate=c.certificate
    )


def _check_trusted(
    decoded: DecodedDcc,
    trust: DccTrust,
    clock: Clock,
    policy: DccPolicy,
    revocations: RevocationList | None,
    allowed_kinds: Collection[str] | None,
    skew_s: int,
) -> Reason:
    claims, cert = decoded.claims, decoded.claims.certificate
    dsc = trust.dsc_for(decoded.kid)
    if dsc is None:
        raise ProtocolError(Reason.UNKNOWN_KID, f"kid {decoded.kid.hex()} is not a trusted DSC")
    if not signature_valid(decoded.msg, dsc):
        raise ProtocolError(Reason.BAD_SIGNATURE, "signature does not verify with the DSC")
    if cert.kind not in dsc.kinds:
        raise ProtocolError(Reason.DSC_KIND_NOT_ALLOWED, f"DSC may not sign {cert.kind}")
    content = check_content(cert, policy, allowed_kinds)
    if content is not Reason.OK:
        return content
    if revocations is not None and (
        decoded.kid in revocations.kids
        or revocations.is_pass_revoked(pass_ref_of(decoded.msg.ref_material))
    ):
        return Reason.REVOKED
    # Time checks: a refusal one of them can prove wins over another's "cannot tell" (amber).
    timed = (
        _dsc_in_force(dsc, clock),
        check_time(_time_claims(claims), clock, skew_s),
        check_timing(cert, policy, clock, skew_s),
    )
    for reason in sorted(set(timed) - {Reason.OK}, key=timed.index):
        if reason is not Reason.CLOCK_UNTRUSTED:
            return reason
    if Reason.CLOCK_UNTRUSTED in timed:
        return Reason.CLOCK_UNTRUSTED
    stale_at = min(trust.expires_at, revocations.expires_at if revocations else trust.expires_at)
    if not (clock.state is ClockState.SYNCED and clock.now <= stale_at):
        return Reason.TRUST_STALE
    return Reason.OK


def pass_ref_of(material: bytes) -> bytes:
    """The same reference function as chot passes: SHA-256(...)[0:16]."""
    return hashlib.sha256(material).digest()[:16]


def _dsc_in_force(dsc: Dsc, clock: Clock) -> Reason:
    """The signer must be in force at checking time; unprovable is amber, never green."""
    if clock.state is ClockState.SYNCED:
        return Reason.OK if dsc.in_force(clock.now) else Reason.DSC_NOT_IN_FORCE
    if clock.state is ClockState.BOUNDED and (clock.lower_bound or 0) > dsc.not_after:
        return Reason.DSC_NOT_IN_FORCE
    return Reason.CLOCK_UNTRUSTED


def _time_claims(claims: DccClaims) -> PassClaims:
    return PassClaims(claims.iss, claims.iat, claims.exp, b"", b"", "")
