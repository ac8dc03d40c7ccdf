"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA/Ed25519, the only signature structure chot uses.

Passes, trust lists, revocation lists, device configs and scan events are all COSE_Sign1 with
the signer's kid in the protected header. This module knows nothing about what is inside.
"""

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protocol import cbor
from protocol.reasons import ProtocolError, Reason

COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
HDR_ALG = 1
HDR_KID = 4
SIGNATURE_LENGTH = 64


def public_key_from_hex(text: str) -> bytes:
    """A raw 32-byte Ed25519 public key from hex (config files); ValueError otherwise."""
    try:
        key = bytes.fromhex(text)
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise ValueError(f"{text!r} is not a 32-byte Ed25519 public key in hex")
    return key


def kid_for(public_key: bytes) -> bytes:
    """Key id of an Ed25519 public key: SHA-256(raw 32-byte key)[0:8] (chot pass v1)."""
    return hashlib.sha256(bytes(public_key)).digest()[:8]


@dataclass(slots=True)
class Sign1:
    """A parsed, not yet verified COSE_Sign1 message."""

    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        return self.protected.get(HDR_ALG)

    @property
    def kid(self) -> bytes | None:
        """The kid from the protected header only: an unprotected kid is not signed."""
        kid = self.protected.get(HDR_KID)
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected_bytes, self.payload)

    def verify(self, public_key: bytes) -> bool:
        """True when the signature is valid for `public_key`; never raises on bad input."""
        try:
            _verify_key(bytes(public_key)).verify(self.to_be_signed(), self.signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


@functools.lru_cache(maxsize=256)
def _verify_key(public_key: bytes) -> VerifyKey:
    """Issuer and device keys repeat scan after scan: build each VerifyKey once."""
    return VerifyKey(public_key)


def sig_structure(protected_bytes: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 Sig_structure, no external AAD."""
    return cbor.dumps(["Signature1", protected_bytes, b"", payload])


def sign1(payload: bytes, key: SigningKey) -> bytes:
    """Sign `payload` into a tagged COSE_Sign1 with {alg: EdDSA, kid} protected."""
    kid = kid_for(bytes(key.verify_key))
    protected = cbor.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: kid})
    signature = key.sign(sig_structure(protected, payload)).signature
    return cbor.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def parse_sign1(data: bytes) -> Sign1:
    """Parse the structure, not the signature. Raises ProtocolError bad_cbor/bad_cose/bad_alg."""
    tagged = data[:1] == _TAG18  # the usual form: skip the generic tag machinery
    item = cbor.loads_strict(data[1:] if tagged else data)
    if isinstance(item, cbor2.CBORTag):
        if tagged or item.tag != COSE_SIGN1_TAG:
            raise ProtocolError(Reason.BAD_COSE, f"tag {item.tag} is not COSE_Sign1 (or nested)")
        item = item.value
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise ProtocolError(Reason.BAD_COSE, "COSE_Sign1 must be an array of 4")
    protected_bytes, unprotected, payload, signature = item
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, Mapping):
        raise ProtocolError(Reason.BAD_COSE, "bad header types")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise ProtocolError(Reason.BAD_COSE, "payload and signature must be byte strings")
    protected = _parse_protected(protected_bytes)
    if not isinstance(protected, Mapping):
        raise ProtocolError(Reason.BAD_COSE, "protected header must be a map")
    if protected.get(HDR_ALG) != ALG_EDDSA:
        raise ProtocolError(Reason.BAD_ALG, f"alg {protected.get(HDR_ALG)!r} is not EdDSA (-8)")
    if len(signature) != SIGNATURE_LENGTH:
        raise ProtocolError(Reason.BAD_COSE, f"signature is {len(signature)} bytes, not 64")
    return Sign1(protected_bytes, protected, unprotected, payload, signature)


_TAG18 = b"\xd2"
# {1: -8, 4: h'<8 bytes>'} in deterministic CBOR: what every chot signer writes
_EDDSA_KID_HEADER = bytes.fromhex("a201270448")


def _parse_protected(protected_bytes: bytes) -> Mapping[Any, Any]:
    """The protected header map. chot's own header is recognised byte for byte (it is on the
    hot path of every scan); anything else goes through the strict decoder."""
    if len(protected_bytes) == 13 and protected_bytes.startswith(_EDDSA_KID_HEADER):
        return {HDR_ALG: ALG_EDDSA, HDR_KID: protected_bytes[5:]}
    if not protected_bytes:
        return {}
    try:
        return cbor.loads_strict(protected_bytes)
    except ProtocolError:
        raise ProtocolError(Reason.BAD_COSE, "protected header is not CBOR") from None


def require_protected_kid(msg: Sign1) -> bytes:
    """chot's rule: the kid must be in the protected header (an unprotected kid is unsigned)."""
    if msg.kid is None:
        where = "only in the unprotected header" if HDR_KID in msg.unprotected else "missing"
        raise ProtocolError(Reason.BAD_COSE, f"kid {where}")
    return msg.kid
