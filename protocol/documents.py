"""Signed, versioned documents from the ops root key: the common envelope of trust lists,
revocation lists and device configs.

Each is a COSE_Sign1 whose payload is a CBOR map with at least
`{"typ": tstr, "ver": uint, "iat": uint, "exp": uint}`. A holder keeps the newest it has seen
and refuses anything older (rollback) or a different document reusing a version it has seen.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.reasons import ProtocolError, Reason

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # a 100k-entry revocation list is ~1.7 MB


@dataclass(frozen=True)
class SignedDocument:
    typ: str
    version: int
    issued_at: int
    expires_at: int
    body: Mapping[str, Any]
    raw: bytes  # the exact signed bytes, to persist and republish unchanged
    signer_kid: bytes


def sign_document(
    typ: str,
    version: int,
    issued_at: int,
    expires_at: int,
    body: Mapping[str, Any],
    key: SigningKey,
) -> bytes:
    """Sign a document; `body` keys must not collide with the envelope keys."""
    if version < 1 or expires_at <= issued_at:
        raise ValueError("version must be >= 1 and expires_at after issued_at")
    envelope = {"typ": typ, "ver": int(version), "iat": int(issued_at), "exp": int(expires_at)}
    if set(envelope) & set(body):
        raise ValueError("body may not redefine typ/ver/iat/exp")
    return cose.sign1(cbor.dumps({**body, **envelope}), key)


def open_document(data: bytes, typ: str, root_keys: Mapping[bytes, bytes]) -> SignedDocument:
    """Verify a document against the ops root keys ({kid: public key}) and its type.

    Raises ProtocolError: too_large, bad_cbor, bad_cose, bad_alg, unknown_kid, bad_signature,
    wrong_type, bad_claims.
    """
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_DOCUMENT_BYTES:
        raise ProtocolError(Reason.TOO_LARGE, "document too large or not bytes")
    msg = cose.parse_sign1(bytes(data))
    kid = cose.require_protected_kid(msg)
    public_key = root_keys.get(kid)
    if public_key is None:
        raise ProtocolError(Reason.UNKNOWN_KID, f"document signed by unknown key {kid.hex()}")
    if not msg.verify(public_key):
        raise ProtocolError(Reason.BAD_SIGNATURE, "document signature does not verify")
    payload = cbor.loads_strict(msg.payload)
    if not isinstance(payload, dict):
        raise ProtocolError(Reason.BAD_CLAIMS, "document payload must be a map")
    if payload.get("typ") != typ:
        raise ProtocolError(Reason.WRONG_TYPE, f"expected {typ}, got {payload.get('typ')!r}")
    for field in ("ver", "iat", "exp"):
        if not _is_uint(payload.get(field)):
            raise ProtocolError(Reason.BAD_CLAIMS, f"document field {field} must be uint")
    body = {k: v for k, v in payload.items() if k not in ("typ", "ver", "iat", "exp")}
    return SignedDocument(
        typ, payload["ver"], payload["iat"], payload["exp"], body, bytes(data), kid
    )


def check_newer(candidate: SignedDocument, current: SignedDocument | None) -> bool:
    """Decide whether to replace `current` by `candidate`.

    Returns True to adopt, False when it is the very same document (nothing to do). Raises
    ProtocolError(rollback) for an older version or a different document reusing a version.
    """
    if current is None or candidate.version > current.version:
        return True
    if candidate.version == current.version and candidate.raw == current.raw:
        return False
    if candidate.version == current.version:
        raise ProtocolError(Reason.ROLLBACK, f"version {candidate.version} reused with new content")
    raise ProtocolError(
        Reason.ROLLBACK, f"version {candidate.version} is older than {current.version}"
    )


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
