"""chot pass v1 (shared/protocol.md): encode, decode step by step, and verify offline.

    QR text = "CHOT1:" + base45(zlib(COSE_Sign1(claims)))

`verify_pass` is the one entry point a scanner calls. It is total: for any input it returns a
`PassResult` with a verdict and a stable reason code and never raises.
"""

import hashlib
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.base45 import b45decode, b45encode
from protocol.clock import Clock, ClockState
from protocol.reasons import ProtocolError, Reason, Verdict, verdict_for
from protocol.trust import PASS_KINDS, RevocationList, TrustList

PREFIX = "CHOT1:"
MAX_DECOMPRESSED = 8 * 1024  # zip-bomb bound from the spec
MAX_QR_TEXT = 8 * 1024  # larger than any QR code can hold
DECLARATION_VALIDITY_S = 72 * 3600
DEFAULT_SKEW_S = 300

CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI = 1, 4, 5, 6, 7
CLAIM_CHOT = -70001


@dataclass(slots=True)
class PassClaims:
    """The CWT claims of a pass. `name`, `doc4` and `dob` never leave the device.

    Slotted, not frozen: a frozen dataclass costs ~2 µs more to build, on every scan."""

    iss: str
    iat: int
    exp: int
    cti: bytes
    sub: bytes
    kind: str
    nbf: int | None = None
    name: str | None = None
    doc4: str | None = None
    dob: int | None = None

    @property
    def pass_ref(self) -> bytes:
        return pass_ref(self.cti)

    def to_cbor(self) -> dict[int, Any]:
        chot: dict[str, Any] = {"v": 1, "sub": self.sub, "kind": self.kind}
        for key in ("name", "doc4", "dob"):
            if getattr(self, key) is not None:
                chot[key] = getattr(self, key)
        claims: dict[int, Any] = {
            CLAIM_ISS: self.iss,
            CLAIM_IAT: self.iat,
            CLAIM_EXP: self.exp,
            CLAIM_CTI: self.cti,
            CLAIM_CHOT: chot,
        }
        if self.nbf is not None:
            claims[CLAIM_NBF] = self.nbf
        return claims


def pass_ref(cti: bytes) -> bytes:
    """The pass reference events carry instead of the pass itself: SHA-256(cti)[0:16]."""
    return hashlib.sha256(cti).digest()[:16]


# --- encoding ---------------------------------------------------------------------------------


def encode_cose(claims: PassClaims, key: SigningKey) -> bytes:
    return cose.sign1(cbor.dumps(claims.to_cbor()), key)


def encode_pass(claims: PassClaims, key: SigningKey) -> str:
    """Sign `claims` with an issuer key and return the QR text."""
    return PREFIX + b45encode(zlib.compress(encode_cose(claims, key), 9))


# --- decoding, one small step each ------------------------------------------------------------


def strip_prefix(text: str) -> str:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise ProtocolError(Reason.NOT_CHOT, "text does not start with CHOT1:")
    if len(text) > MAX_QR_TEXT:
        raise ProtocolError(Reason.TOO_LARGE, "text longer than any QR code")
    return text[len(PREFIX) :]


def unbase45(body: str) -> bytes:
    try:
        return b45decode(body)
    except ValueError as exc:
        raise ProtocolError(Reason.BAD_BASE45, str(exc)) from None


def inflate(data: bytes) -> bytes:
    """zlib (RFC 1950) with a hard output bound: a zip bomb stops at 8 KiB + 1 byte."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise ProtocolError(Reason.BAD_ZLIB, str(exc)) from None
    if len(out) > MAX_DECOMPRESSED or inflater.unconsumed_tail:
        raise ProtocolError(Reason.TOO_LARGE, f"decompresses past {MAX_DECOMPRESSED} bytes")
    if not inflater.eof:
        raise ProtocolError(Reason.BAD_ZLIB, "truncated zlib stream")
    if inflater.unused_data:
        raise ProtocolError(Reason.BAD_ZLIB, "trailing bytes after zlib stream")
    return out


def qr_to_cose(text: str) -> bytes:
    return inflate(unbase45(strip_prefix(text)))


# (key, exact type, required): `type(x) is T` also refuses bool where int is expected.
_CWT_SCHEMA = (
    (CLAIM_ISS, str, True),
    (CLAIM_IAT, int, True),
    (CLAIM_EXP, int, True),
    (CLAIM_NBF, int, False),
    (CLAIM_CTI, bytes, True),
)
_CHOT_SCHEMA = (
    ("v", int, True),
    ("sub", bytes, True),
    ("kind", str, True),
    ("name", str, False),
    ("doc4", str, False),
    ("dob", int, False),
)


def _check_schema(mapping: dict, schema: tuple) -> None:
    for key, typ, required in schema:
        value = mapping.get(key)
        if value is None:
            if required:
                raise ProtocolError(Reason.BAD_CLAIMS, f"missing claim {key!r}")
        elif type(value) is not typ or (typ is int and value < 0):
            raise ProtocolError(Reason.BAD_CLAIMS, f"claim {key!r} must be {typ.__name__}")


def parse_claims(payload: bytes) -> PassClaims:
    """CWT claims -> PassClaims; any missing or mistyped known claim is `bad_claims`.

    Unknown claims and unknown `chot` keys are ignored (forward compatibility).
    """
    try:
        raw = cbor.loads_strict(payload)
    except ProtocolError:
        raise ProtocolError(Reason.BAD_CLAIMS, "payload is not CBOR") from None
    if type(raw) is not dict or type(chot := raw.get(CLAIM_CHOT)) is not dict:
        raise ProtocolError(Reason.BAD_CLAIMS, "claims and the chot claim must be maps")
    _check_schema(raw, _CWT_SCHEMA)
    _check_schema(chot, _CHOT_SCHEMA)
    if chot["v"] != 1 or len(raw[CLAIM_CTI]) != 16 or len(chot["sub"]) != 16:
        raise ProtocolError(Reason.BAD_CLAIMS, "chot.v must be 1, cti and sub 16 bytes")
    if chot["kind"] not in PASS_KINDS:
        raise ProtocolError(Reason.BAD_CLAIMS, "unknown pass kind")
    if raw[CLAIM_EXP] < raw[CLAIM_IAT]:
        raise ProtocolError(Reason.BAD_CLAIMS, "exp before iat")
    return PassClaims(
        iss=raw[CLAIM_ISS],
        iat=raw[CLAIM_IAT],
        exp=raw[CLAIM_EXP],
        cti=raw[CLAIM_CTI],
        sub=chot["sub"],
        kind=chot["kind"],
        nbf=raw.get(CLAIM_NBF),
        name=chot.get("name"),
        doc4=chot.get("doc4"),
        dob=chot.get("dob"),
    )


@dataclass(slots=True)
class DecodedPass:
    """A pass decoded without trust: structure checked, signature NOT checked."""

    msg: cose.Sign1
    kid: bytes
    claims: PassClaims


def decode_pass(text: str) -> DecodedPass:
    """Prefix -> base45 -> zlib -> CBOR -> COSE -> claims. Raises ProtocolError."""
    msg = cose.parse_sign1(qr_to_cose(text))
    kid = cose.require_protected_kid(msg)
    return DecodedPass(msg, kid, parse_claims(msg.payload))


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PassResult:
    """The outcome of one verification. `claims` holds personal data: keep it on the device."""

    verdict: Verdict
    reason: Reason
    detail: str = ""
    claims: PassClaims | None = None
    kid: bytes | None = None

    @property
    def pass_ref(self) -> bytes | None:
        return self.claims.pass_ref if self.claims else None

    def public_dict(self) -> dict[str, Any]:
        """What may be shown, logged or published: no name, doc4 or dob."""
        c = self.claims
        return {
            "verdict": self.verdict.value,
            "reason": self.reason.value,
            "issuer": c.iss if c else None,
            "kind": c.kind if c else None,
            "exp": c.exp if c else None,
            "pass_ref": c.pass_ref.hex() if c else None,
        }


def verify_pass(
    text: str,
    trust: TrustList | None,
    clock: Clock,
    *,
    revocations: RevocationList | None = None,
    allowed_kinds: Collection[str] | None = None,
    skew_s: int = DEFAULT_SKEW_S,
) -> PassResult:
    """Decide one pass offline. Total: never raises, whatever `text` is."""
    claims: PassClaims | None = None
    kid: bytes | None = None
    try:
        decoded = decode_pass(text)
        claims, kid = decoded.claims, decoded.kid
        if trust is None:
            raise ProtocolError(Reason.NO_TRUST_LIST, "no trust list installed")
        reason = _check_trusted(decoded, trust, clock, revocations, allowed_kinds, skew_s)
        return PassResult(verdict_for(reason), reason, "", claims, kid)
    except ProtocolError as exc:
        return PassResult(verdict_for(exc.reason), exc.reason, exc.detail, claims, kid)
    except Exception as exc:  # a bug must still give a safe, red answer
        return PassResult(
            Verdict.FAIL, Reason.BAD_COSE, f"internal: {type(exc).__name__}", claims, kid
        )


def _check_trusted(
    decoded: DecodedPass,
    trust: TrustList,
    clock: Clock,
    revocations: RevocationList | None,
    allowed_kinds: Collection[str] | None,
    skew_s: int,
) -> Reason:
    claims = decoded.claims
    issuer = trust.key_for(decoded.kid)
    if issuer is None:
        raise ProtocolError(Reason.UNKNOWN_KID, f"kid {decoded.kid.hex()} not in trust list")
    if not decoded.msg.verify(issuer.public_key):
        raise ProtocolError(Reason.BAD_SIGNATURE, "signature does not verify")
    if claims.iss != issuer.issuer:
        raise ProtocolError(Reason.ISSUER_MISMATCH, "iss differs from the trust-list entry")
    if not issuer.not_before <= claims.iat <= (issuer.not_after or claims.iat):
        raise ProtocolError(Reason.UNKNOWN_KID, "pass issued outside the key's validity")
    if claims.kind not in issuer.kinds or (
        allowed_kinds is not None and claims.kind not in allowed_kinds
    ):
        raise ProtocolError(Reason.KIND_NOT_ALLOWED, f"kind {claims.kind} not accepted here")
    if revocations is not None and (
        decoded.kid in revocations.kids or revocations.is_pass_revoked(claims.pass_ref)
    ):
        raise ProtocolError(Reason.REVOKED, "pass or issuer key revoked")
    time_reason = check_time(claims, clock, skew_s)
    if time_reason in (Reason.EXPIRED, Reason.NOT_YET_VALID):
        return time_reason
    # provable whatever the clock says, so red even when the clock is untrusted
    validity_s = claims.exp - max(claims.iat, claims.nbf or 0)
    if validity_s > issuer.max_validity_s(claims.kind):
        raise ProtocolError(
            Reason.VALIDITY_TOO_LONG,
            f"{claims.kind} valid {validity_s} s, issuer allows {issuer.max_validity_s(claims.kind)} s",
        )
    if time_reason is not Reason.OK:
        return time_reason
    stale_at = min(trust.expires_at, revocations.expires_at if revocations else trust.expires_at)
    if not _known_before(stale_at, clock):
        return Reason.TRUST_STALE
    return Reason.OK


def check_time(claims: PassClaims, clock: Clock, skew_s: int = DEFAULT_SKEW_S) -> Reason:
    """Expiry and start of validity under a clock that may not be trusted.

    SYNCED: compare with `now` (start of validity with `skew_s` of slack). BOUNDED: only "true
    time >= lower_bound" is known, so `expired` can be proven but validity never can.
    UNKNOWN: nothing can be proven. Whatever cannot be proven is `clock_untrusted`, never OK.
    """
    start = max(claims.iat, claims.nbf or 0)
    if clock.state is ClockState.SYNCED:
        if clock.now > claims.exp:
            return Reason.EXPIRED
        if clock.now + skew_s < start:
            return Reason.NOT_YET_VALID
        return Reason.OK
    bound = clock.lower_bound if clock.state is ClockState.BOUNDED else None
    if bound is not None and bound > claims.exp:
        return Reason.EXPIRED
    return Reason.CLOCK_UNTRUSTED


def _known_before(deadline: int, clock: Clock) -> bool:
    """True when the clock proves we are still at or before `deadline`."""
    return clock.state is ClockState.SYNCED and clock.now <= deadline
