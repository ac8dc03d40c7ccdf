"""QR images of passes (segno): alphanumeric mode, error correction M.

Pass text is base45, which is QR's alphanumeric alphabet, so alphanumeric mode packs it at
5.5 bits per character (a 72-hour declaration is a version 10 symbol, 57 modules).
Scale 8 px per module: printed at 300 dpi a module is 0.68 mm and the symbol about 39 mm,
large enough for a scanner camera at 30 cm; on a phone screen it is simply sharp.
"""

from pathlib import Path

import segno

PNG_SCALE = 8
BORDER = 4  # the quiet zone the QR standard asks for


def make_qr(text: str) -> segno.QRCode:
    return segno.make(text, error="m", mode="alphanumeric", micro=False, boost_error=False)


def write_png(text: str, path: Path, *, scale: int = PNG_SCALE) -> Path:
    make_qr(text).save(str(path), kind="png", scale=scale, border=BORDER)
    return Path(path)


def module_rows(text: str) -> list[list[bool]]:
    """The symbol's dark modules, row by row, without the quiet zone."""
    return [[bool(v) for v in row] for row in make_qr(text).matrix]
