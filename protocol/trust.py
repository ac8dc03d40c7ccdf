"""Trust list and revocation list: which issuer keys a device trusts, and what is revoked.

Both are `documents.SignedDocument`s signed by the ops root key. The revocation list keeps pass
references as one sorted byte string of 16-byte records so 100,000 entries cost 1.6 MB on the
wire and in memory, with O(log n) lookup and no per-entry Python objects.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from protocol import cose
from protocol.documents import SignedDocument, open_document, sign_document
from protocol.reasons import ProtocolError, Reason

# the signed documents of the ops root key (`typ` in their envelope, protocol/documents.py)
TRUST_TYPE = "chot-trust"
REVOCATION_TYPE = "chot-revocations"
CONFIG_TYPE = "chot-config"  # per-device policy, body read by device/documents_store.py
PASS_KINDS = ("declaration", "vaccination", "test", "recovery")
PASS_REF_LENGTH = 16
KID_LENGTH = 8
HOUR, DAY = 3600, 86400
# The longest a pass of each kind may be valid (exp - max(iat, nbf)), unless the trust entry
# says otherwise ("maxv"). Declaration 72 h: the field rule, one QR per person valid 72 h. Test
# 72 h: the usual PCR acceptance window. Vaccination 12 months: Vietnam's vaccine passports
# (Decision 5772/QD-BYT) are valid 12 months. Recovery 6 months: the EU DCC's 180-day limit.
# An entry without "maxv" (a list signed before it existed) gets these defaults.
DEFAULT_MAX_VALIDITY_S: dict[str, int] = {
    "declaration": 72 * HOUR,
    "vaccination": 365 * DAY,
    "test": 72 * HOUR,
    "recovery": 180 * DAY,
}
MAX_VALIDITY_CEILING_S = 2 * 365 * DAY  # no issuer may configure more than this for any kind


@dataclass(frozen=True)
class IssuerKey:
    """One issuer key a device trusts.

    Passes are accepted only when issued (iat) inside [not_before, not_after]: retiring a key
    sets not_after so passes it already issued stay valid until they expire. `max_validity`
    holds (kind, seconds) pairs overriding DEFAULT_MAX_VALIDITY_S for this issuer: a pass
    valid longer than its kind allows is refused (`validity_too_long`) even when signed.
    """

    issuer: str
    public_key: bytes
    kinds: tuple[str, ...] = PASS_KINDS
    not_before: int = 0
    not_after: int | None = None
    max_validity: tuple[tuple[str, int], ...] = ()

    @property
    def kid(self) -> bytes:
        return cose.kid_for(self.public_key)

    def max_validity_s(self, kind: str) -> int:
        """The longest validity this issuer's passes of `kind` may have."""
        for name, seconds in self.max_validity:
            if name == kind:
                return seconds
        return DEFAULT_MAX_VALIDITY_S.get(kind, min(DEFAULT_MAX_VALIDITY_S.values()))

    def to_cbor(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "iss": self.issuer,
            "key": self.public_key,
            "kinds": list(self.kinds),
            "nbf": self.not_before,
        }
        if self.not_after is not None:
            item["naf"] = self.not_after
        if self.max_validity:
            item["maxv"] = dict(self.max_validity)
        return item

    @classmethod
    def from_cbor(cls, item: Any) -> "IssuerKey":
        if not isinstance(item, dict):
            raise ProtocolError(Reason.BAD_CLAIMS, "trust entry must be a map")
        iss, key, kinds = item.get("iss"), item.get("key"), item.get("kinds", list(PASS_KINDS))
        nbf, naf = item.get("nbf", 0), item.get("naf")
        if not isinstance(iss, str) or not isinstance(key, bytes) or len(key) != 32:
            raise ProtocolError(
                Reason.BAD_CLAIMS, "trust entry needs iss (text) and key (32 bytes)"
            )
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise ProtocolError(Reason.BAD_CLAIMS, "trust entry kinds must be a list of text")
        if not isinstance(nbf, int) or (naf is not None and not isinstance(naf, int)):
            raise ProtocolError(Reason.BAD_CLAIMS, "trust entry nbf/naf must be integers")
        return cls(iss, key, tuple(kinds), nbf, naf, _max_validity_from_cbor(item.get("maxv")))


def check_max_validity(limits: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Sorted (kind, seconds) pairs; ValueError for an unknown kind or a limit outside
    1 s .. MAX_VALIDITY_CEILING_S."""
    for kind, seconds in limits.items():
        if kind not in PASS_KINDS:
            raise ValueError(f"max validity: unknown kind {kind!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValueError(f"max validity of {kind} must be whole seconds")
        if not 0 < seconds <= MAX_VALIDITY_CEILING_S:
            raise ValueError(
                f"max validity of {kind} must be 1 s to {MAX_VALIDITY_CEILING_S // DAY} days"
            )
    return tuple(sorted(limits.items()))


def _max_validity_from_cbor(value: Any) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ProtocolError(Reason.BAD_CLAIMS, "trust entry maxv must map kind to seconds")
    try:
        return check_max_validity(value)
    except ValueError as exc:
        raise ProtocolError(Reason.BAD_CLAIMS, f"trust entry {exc}") from None


@dataclass(frozen=True)
class TrustList:
    version: int
    issued_at: int
    expires_at: int
    issuers: Mapping[bytes, IssuerKey]  # by kid
    raw: bytes = b""

    def key_for(self, kid: bytes) -> IssuerKey | None:
        return self.issuers.get(kid)


@dataclass(frozen=True)
class RevocationList:
    version: int
    issued_at: int
    expires_at: int
    pass_refs: bytes = b""  # sorted, concatenated 16-byte pass references
    kids: frozenset[bytes] = field(default_factory=frozenset)  # revoked issuer kids
    devices: frozenset[str] = field(default_factory=frozenset)  # revoked device ids
    raw: bytes = b""

    def __len__(self) -> int:
        return len(self.pass_refs) // PASS_REF_LENGTH

    def is_pass_revoked(self, pass_ref: bytes) -> bool:
        """Binary search over the fixed-width records."""
        lo, hi = 0, len(self)
        refs = self.pass_refs
        while lo < hi:
            mid = (lo + hi) // 2
            record = refs[mid * PASS_REF_LENGTH : (mid + 1) * PASS_REF_LENGTH]
            if record == pass_ref:
                return True
            if record < pass_ref:
                lo = mid + 1
            else:
                hi = mid
        return False


def root_keyring(public_keys: Iterable[bytes]) -> dict[bytes, bytes]:
    """{kid: public key} for the ops root keys a holder pins."""
    return {cose.kid_for(k): bytes(k) for k in public_keys}


# --- trust list -------------------------------------------------------------------------------


def sign_trust_list(
    issuers: Iterable[IssuerKey],
    *,
    version: int,
    issued_at: int,
    expires_at: int,
    root_key: SigningKey,
) -> bytes:
    body = {"issuers": [i.to_cbor() for i in issuers]}
    return sign_document(TRUST_TYPE, version, issued_at, expires_at, body, root_key)


def trust_list_from_document(doc: SignedDocument) -> TrustList:
    entries = doc.body.get("issuers")
    if not isinstance(entries, list):
        raise ProtocolError(Reason.BAD_CLAIMS, "trust list needs an issuers array")
    issuers = {entry.kid: entry for entry in map(IssuerKey.from_cbor, entries)}
    return TrustList(doc.version, doc.issued_at, doc.expires_at, issuers, doc.raw)


def open_trust_list(data: bytes, root_keys: Mapping[bytes, bytes]) -> TrustList:
    """Verify and parse a signed trust list (see `documents.open_document` for reasons)."""
    return trust_list_from_document(open_document(data, TRUST_TYPE, root_keys))


# --- revocation list --------------------------------------------------------------------------


def pack_pass_refs(refs: Iterable[bytes]) -> bytes:
    unique = sorted(set(bytes(r) for r in refs))
    if any(len(r) != PASS_REF_LENGTH for r in unique):
        raise ValueError("pass references are 16 bytes")
    return b"".join(unique)


def sign_revocation_list(
    *,
    pass_refs: Iterable[bytes] = (),
    kids: Iterable[bytes] = (),
    devices: Iterable[str] = (),
    version: int,
    issued_at: int,
    expires_at: int,
    root_key: SigningKey,
) -> bytes:
    body = {
        "refs": pack_pass_refs(pass_refs),
        "kids": sorted(set(bytes(k) for k in kids)),
        "devices": sorted(set(devices)),
    }
    return sign_document(REVOCATION_TYPE, version, issued_at, expires_at, body, root_key)


def revocation_list_from_document(doc: SignedDocument) -> RevocationList:
    refs, kids, devices = (
        doc.body.get("refs", b""),
        doc.body.get("kids", []),
        doc.body.get("devices", []),
    )
    if not isinstance(refs, bytes) or len(refs) % PASS_REF_LENGTH:
        raise ProtocolError(Reason.BAD_CLAIMS, "refs must be concatenated 16-byte records")
    if any(refs[i : i + 16] >= refs[i + 16 : i + 32] for i in range(0, len(refs) - 16, 16)):
        raise ProtocolError(Reason.BAD_CLAIMS, "refs must be sorted and unique")
    if not isinstance(kids, list) or not all(isinstance(k, bytes) for k in kids):
        raise ProtocolError(Reason.BAD_CLAIMS, "kids must be a list of byte strings")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise ProtocolError(Reason.BAD_CLAIMS, "devices must be a list of text")
    return RevocationList(
        doc.version,
        doc.issued_at,
        doc.expires_at,
        refs,
        frozenset(kids),
        frozenset(devices),
        doc.raw,
    )


def open_revocation_list(data: bytes, root_keys: Mapping[bytes, bytes]) -> RevocationList:
    return revocation_list_from_document(open_document(data, REVOCATION_TYPE, root_keys))
