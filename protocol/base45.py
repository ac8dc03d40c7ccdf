"""Base45 (RFC 9285): the QR alphanumeric alphabet, so a pass fits QR's densest text mode."""

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_WEIGHTS = np.array([1, 45, 45 * 45], dtype=np.uint32)
_INVALID = 0xFF
_DECODE_TABLE = bytes(
    ALPHABET.find(chr(i)) % 256 if chr(i) in ALPHABET else _INVALID for i in range(256)
)


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = divmod(n, 45 * 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[d], ALPHABET[e], ALPHABET[c])
    if len(data) % 2:
        e, d = divmod(data[-1], 45)
        out += (ALPHABET[d], ALPHABET[e])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode strictly: unknown characters, a dangling char or a group out of range raise.

    Vectorised (bytes.translate + numpy) rather than a per-character loop: it runs on every scan
    and was the largest cost in the verify chain after the signature itself (see bench/).
    """
    if len(text) % 3 == 1:
        raise ValueError("base45 length leaves a dangling character")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not a base45 character") from None
    values = raw.translate(_DECODE_TABLE)
    if _INVALID in values:
        raise ValueError("not a base45 character")
    cut = len(values) - len(values) % 3
    groups = np.frombuffer(values, dtype=np.uint8, count=cut).reshape(-1, 3) @ _WEIGHTS
    if groups.size and int(groups.max()) > 0xFFFF:
        raise ValueError("base45 triplet out of range")
    out = groups.astype(">u2").tobytes()
    if cut < len(values):
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise ValueError("base45 pair out of range")
        out += bytes((n,))
    return out
