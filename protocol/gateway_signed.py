"""Opening a document a site gateway signed (acks, recent-pass snapshots): one way to check it.

Such a document is a COSE_Sign1 whose CBOR payload names its gateway (`gw`); it is trusted only
when signed, with the kid in the protected header, by the key pinned for that gateway. The
caller's `check` turns the payload into its record (or raises); its `error` class carries the
stable reason codes too_large, unsigned and wrong_key.
"""

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from protocol import cbor, cose
from protocol.reasons import ProtocolError


class GatewaySignedError(ValueError):
    """A gateway-signed document the reader must ignore; `reason` is a short stable code
    (logged and counted). Each document type has its own subclass."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class FromGateway(Protocol):
    @property
    def gw(self) -> str: ...


Doc = TypeVar("Doc", bound=FromGateway)


def open_gateway_signed(
    data: bytes,
    gateway_keys: Mapping[str, bytes],
    *,
    max_bytes: int,
    check: Callable[[object], Doc],
    error: type[GatewaySignedError],
) -> Doc:
    """Verify size, COSE structure, contract (`check`) and the pinned key of the gateway the
    payload names, in that order; raises `error(reason, detail)` on the first that fails."""
    if not isinstance(data, bytes | bytearray) or len(data) > max_bytes:
        raise error("too_large")
    try:
        msg = cose.parse_sign1(bytes(data))
        kid = cose.require_protected_kid(msg)
        payload = cbor.loads_strict(msg.payload)
    except ProtocolError as exc:
        raise error("unsigned", exc.reason.value) from None
    doc = check(payload)
    key = gateway_keys.get(doc.gw)
    if key is None or kid != cose.kid_for(key) or not msg.verify(key):
        raise error("wrong_key", f"not signed by a pinned gateway key (gw {doc.gw})")
    return doc
