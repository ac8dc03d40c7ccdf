"""CBOR in and out, the safe way: deterministic encoding, strict bounded decoding.

Every decoder in chot goes through `loads_strict`, so trailing bytes, unknown tags and parser
crashes all become one `bad_cbor` reason instead of an exception escaping to the caller.
"""

import io
import threading
from typing import Any

import cbor2

from protocol.reasons import ProtocolError, Reason

# Tags a chot document may carry: 18 = COSE_Sign1. Anything else is refused rather than
# handed to cbor2's semantic decoders (dates, bignums, regexes ...) which widen the attack surface.
ALLOWED_TAGS = frozenset({18})


def dumps(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 §4.2): shortest forms, map keys sorted by encoded bytes."""
    return cbor2.dumps(obj, canonical=True)


# cbor2 decodes these tags itself (dates, bignums, sets, shared refs ...) without asking the
# tag hook; each is mapped to a refusal so only ALLOWED_TAGS ever reach chot's code.
_BUILTIN_TAGS = (
    0,
    1,
    2,
    3,
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    43000,
    55799,
)


def _refuse_tag(*_args: Any) -> Any:
    raise ValueError("CBOR tag not allowed")


_REFUSED_TAGS = {tag: _refuse_tag for tag in _BUILTIN_TAGS if tag not in ALLOWED_TAGS}
MAX_DEPTH = 16  # chot documents nest 4 deep; a deeply nested input is an attack, not a pass


def _tag_hook(*args: Any) -> Any:
    # cbor2 >= 6 calls hook(tag, immutable); older versions hook(decoder, tag).
    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
    if tag.tag not in ALLOWED_TAGS:
        raise ValueError(f"CBOR tag {tag.tag} not allowed")
    return tag


_local = threading.local()


def _decoder() -> cbor2.CBORDecoder:
    """One configured decoder per thread, pointed at each new input: building one with these
    options costs about as much as decoding a pass, three times per scan."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = cbor2.CBORDecoder(
            io.BytesIO(b""),
            tag_hook=_tag_hook,
            semantic_decoders=_REFUSED_TAGS,
            max_depth=MAX_DEPTH,
            allow_duplicate_keys=False,
        )
    return decoder


def loads_strict(data: bytes) -> Any:
    """Decode exactly one CBOR item that spans all of `data`; any problem is `bad_cbor`."""
    try:
        stream = io.BytesIO(data)
        decoder = _decoder()
        decoder.fp = stream
        value = decoder.decode()
    except Exception as exc:  # cbor2 raises many types (incl. RecursionError, MemoryError)
        _local.decoder = None  # never reuse a decoder left in an unknown state
        raise ProtocolError(Reason.BAD_CBOR, type(exc).__name__) from None
    if stream.tell() != len(data):
        raise ProtocolError(Reason.BAD_CBOR, "trailing bytes after CBOR item")
    return value
