"""The first half of reading a DCC: QR text -> COSE_Sign1 (hcert §2-3), not yet verified.

    "HC1:" + base45(zlib(COSE_Sign1))   ->   DccSign1(protected, alg, kid, payload, signature)

Every scan runs this, so the usual shapes are read byte for byte (the protected header
{1: alg, 4: kid} and a COSE_Sign1 with an empty unprotected map, as nearly every issuer writes
them); any other shape goes through the strict CBOR decoder, and both ways give the same
`DccSign1` for the same bytes (tests/protocol/test_dcc_cose.py holds them to that).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from protocol import cbor, cose
from protocol.base45 import b45decode
from protocol.pass_v1 import MAX_QR_TEXT
from protocol.pass_v1 import inflate as bounded_inflate
from protocol.reasons import ProtocolError, Reason

PREFIX = "HC1:"
ALG_ES256 = -7
ALG_PS256 = -37
ES256_SIGNATURE_LENGTH = 64


def is_dcc(text: Any) -> bool:
    """True when a scanned text claims to be a DCC: route it here instead of to pass_v1."""
    return isinstance(text, str) and text.startswith(PREFIX)


def qr_to_cose(text: str) -> bytes:
    """Prefix, base45, zlib (required: an uncompressed COSE is `bad_zlib`, bounded to 8 KiB)."""
    if not is_dcc(text):
        raise ProtocolError(Reason.NOT_CHOT, "text does not start with HC1:")
    if len(text) > MAX_QR_TEXT:
        raise ProtocolError(Reason.TOO_LARGE, "text longer than any QR code")
    try:
        data = b45decode(text[len(PREFIX) :])
    except ValueError as exc:
        raise ProtocolError(Reason.BAD_BASE45, str(exc)) from None
    if data[:1] != b"\x78":  # every zlib stream starts with CMF 0x78 (deflate, 32 KiB window)
        raise ProtocolError(Reason.BAD_ZLIB, "not zlib-compressed (hcert requires zlib)")
    return bounded_inflate(data)


@dataclass(frozen=True, slots=True)
class DccSign1:
    """A parsed, not yet verified COSE_Sign1 of a DCC."""

    protected_bytes: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """RFC 9052 Sig_structure ["Signature1", protected, h'', payload], written directly:
        the same bytes as `cose.sig_structure` (tested), without a CBOR encoder per scan."""
        return b"".join(
            (
                _SIG1_PREFIX,
                _bstr_head(len(self.protected_bytes)),
                self.protected_bytes,
                b"\x40",
                _bstr_head(len(self.payload)),
                self.payload,
            )
        )

    @property
    def ref_material(self) -> bytes:
        """What the certificate reference hashes: ECDSA's `r` only (`s` is malleable, so the
        same certificate could otherwise be shown under many references), RSA's whole value."""
        return self.signature[:32] if self.alg == ALG_ES256 else self.signature


_SIG1_PREFIX = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def _bstr_head(n: int) -> bytes:
    """The shortest CBOR head of a byte string of length n (deterministic encoding)."""
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def parse_cose(data: bytes) -> DccSign1:
    """COSE_Sign1, tagged (18) or untagged. Raises bad_cbor / bad_cose / bad_alg."""
    item = _usual_sign1(data)
    if item is None:
        item = _strict_sign1(data)
    protected_bytes, unprotected, payload, signature = item
    if type(protected_bytes) is not bytes or not isinstance(unprotected, Mapping):
        raise ProtocolError(Reason.BAD_COSE, "bad header types")
    if type(payload) is not bytes or type(signature) is not bytes:
        raise ProtocolError(Reason.BAD_COSE, "payload and signature must be byte strings")
    protected = _protected(protected_bytes)
    alg = protected.get(cose.HDR_ALG)
    if alg not in (ALG_ES256, ALG_PS256) or type(alg) is not int:
        raise ProtocolError(Reason.BAD_ALG, f"alg {alg!r} is neither ES256 (-7) nor PS256 (-37)")
    if alg == ALG_ES256 and len(signature) != ES256_SIGNATURE_LENGTH:
        raise ProtocolError(Reason.BAD_COSE, f"ES256 signature is {len(signature)} bytes, not 64")
    return DccSign1(protected_bytes, alg, _kid(protected, unprotected), payload, signature)


def _strict_sign1(data: bytes) -> list[Any]:
    """Any shape of COSE_Sign1, through the strict CBOR decoder."""
    item = cbor.loads_strict(data)
    if isinstance(item, cbor2.CBORTag):
        if item.tag != cose.COSE_SIGN1_TAG or isinstance(item.value, cbor2.CBORTag):
            raise ProtocolError(Reason.BAD_COSE, f"tag {item.tag} is not COSE_Sign1")
        item = item.value
    if type(item) not in (list, tuple) or len(item) != 4:
        raise ProtocolError(Reason.BAD_COSE, "COSE_Sign1 must be an array of 4")
    return list(item)


def _usual_sign1(data: bytes) -> list[Any] | None:
    """[protected, {}, payload, signature] when `data` is exactly tag 18 (or no tag), an array
    of 4, three definite byte strings around an empty map; else None (the strict decoder then
    reads it). Cheap enough for every scan: four head reads, no decoder."""
    pos = 1 if data[:1] == b"\xd2" else 0
    if data[pos : pos + 1] != b"\x84":
        return None
    protected = _byte_string(data, pos + 1)
    if protected is None or data[protected.end : protected.end + 1] != b"\xa0":
        return None
    payload = _byte_string(data, protected.end + 1)
    signature = None if payload is None else _byte_string(data, payload.end)
    if signature is None or signature.end != len(data):
        return None
    return [protected.value, {}, payload.value, signature.value]


@dataclass(frozen=True, slots=True)
class _Read:
    value: bytes
    end: int  # the offset just after it


def _byte_string(data: bytes, pos: int) -> _Read | None:
    """A definite-length CBOR byte string at `pos` (RFC 8949 §3: major type 2), or None."""
    head = data[pos] if pos < len(data) else -1
    if 0x40 <= head <= 0x57:
        start, length = pos + 1, head - 0x40
    elif 0x58 <= head <= 0x5A:
        width = 1 << (head - 0x58)  # 1, 2 or 4 bytes of length
        start = pos + 1 + width
        if start > len(data):
            return None
        length = int.from_bytes(data[pos + 1 : start], "big")
    else:
        return None
    end = start + length
    return _Read(data[start:end], end) if end <= len(data) else None


# {1: alg, 4: h'<8 bytes>'} in deterministic CBOR, as nearly every issuer writes it: read byte
# for byte (it is on every scan); anything else goes through the strict decoder.
_FAST_HEADERS = {bytes.fromhex("a201260448"): ALG_ES256, bytes.fromhex("a20138240448"): ALG_PS256}


def _protected(protected_bytes: bytes) -> Mapping[Any, Any]:
    if not protected_bytes:
        return {}
    for prefix, alg in _FAST_HEADERS.items():
        n = len(prefix)
        if len(protected_bytes) == n + 8 and protected_bytes[:n] == prefix:
            return {cose.HDR_ALG: alg, cose.HDR_KID: protected_bytes[n:]}
    try:
        protected = cbor.loads_strict(protected_bytes)
    except ProtocolError:
        raise ProtocolError(Reason.BAD_COSE, "protected header is not CBOR") from None
    if not isinstance(protected, dict):
        raise ProtocolError(Reason.BAD_COSE, "protected header must be a map")
    return protected


def _kid(protected: Mapping[Any, Any], unprotected: Mapping[Any, Any]) -> bytes:
    """hcert §3.3.1: the kid belongs in the protected header; the unprotected one is used only
    when the protected header has none (the signature still binds the DSC it names)."""
    kid = protected[cose.HDR_KID] if cose.HDR_KID in protected else unprotected.get(cose.HDR_KID)
    if kid is None:
        raise ProtocolError(Reason.BAD_COSE, "kid missing")
    if not isinstance(kid, bytes) or not kid:
        raise ProtocolError(Reason.BAD_COSE, "kid must be a non-empty byte string")
    return kid
