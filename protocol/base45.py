"""Base45 (RFC 9285): the QR alphanumeric alphabet, so a pass fits QR's densest text mode."""

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


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
    """Decode strictly: unknown characters, a dangling char or a group out of range raise."""
    if len(text) % 3 == 1:
        raise ValueError("base45 length leaves a dangling character")
    try:
        values = [_INDEX[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"not a base45 character: {exc.args[0]!r}") from None
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 45 * 45
        if n > 0xFFFF:
            raise ValueError("base45 triplet out of range")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise ValueError("base45 pair out of range")
        out.append(n)
    return bytes(out)
