"""Printable pass cards: a minimal PDF 1.4 writer, no dependency.

Ten credit-card-sized cards (85.6 x 54 mm) per A4 page, each with the QR drawn as vector
squares (sharp at any printer resolution) at 39 mm or more, the kind, the validity period
(Vietnam time, UTC+7) and the pass reference to read over the phone. No name, document number
or birth date unless the caller asks (`print_name`). The base-14 Helvetica font needs no
embedding; text outside Latin-1 is folded to ASCII ("Nguyễn" -> "Nguyen").
"""

import datetime as dt
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioning.passes import format_pass_ref
from provisioning.qr import BORDER, module_rows

MM = 72 / 25.4
A4 = (210 * MM, 297 * MM)
CARD_W, CARD_H = 85.6 * MM, 54 * MM
QR_BOX = 46 * MM  # symbol + quiet zone; the symbol itself is >= 39 mm for versions <= 10
COLUMNS, ROWS = 2, 5
VN_TIME = dt.timezone(dt.timedelta(hours=7))


@dataclass(frozen=True)
class Card:
    qr_text: str
    kind: str
    issuer: str
    iat: int
    exp: int
    pass_ref: bytes
    name: str | None = None  # printed only when given: the caller decides (opt-in)


def _ascii(text: str) -> str:
    text = text.replace("đ", "d").replace("Đ", "D")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return folded.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _when(t: int) -> str:
    return dt.datetime.fromtimestamp(t, VN_TIME).strftime("%Y-%m-%d %H:%M")


def _text(x: float, y: float, size: float, text: str, bold: bool = False) -> str:
    font = "F2" if bold else "F1"
    return f"BT /{font} {size} Tf {x:.2f} {y:.2f} Td ({_ascii(text)}) Tj ET\n"


def _card(card: Card, x: float, y: float) -> str:
    """Drawing commands for one card whose lower-left corner is (x, y)."""
    out = [f"0.7 G 0.5 w {x:.2f} {y:.2f} {CARD_W:.2f} {CARD_H:.2f} re S 0 g\n"]
    rows = module_rows(card.qr_text)
    n = len(rows)
    module = QR_BOX / (n + 2 * BORDER)
    qx, qy = x + 2 * MM, y + (CARD_H - QR_BOX) / 2
    for r, row in enumerate(rows):
        c = 0
        while c < n:  # one rectangle per run of dark modules
            if not row[c]:
                c += 1
                continue
            start = c
            while c < n and row[c]:
                c += 1
            rx = qx + (BORDER + start) * module
            ry = qy + QR_BOX - (BORDER + r + 1) * module
            out.append(f"{rx:.3f} {ry:.3f} {(c - start) * module:.3f} {module:.3f} re\n")
    out.append("f\n")
    tx, top = x + 50 * MM, y + CARD_H - 9 * MM
    ref = format_pass_ref(card.pass_ref).split(" ")
    lines = [
        (11, "chot pass", True),
        (9, card.kind, True),
        (7, f"issuer {card.issuer}", False),
        (7, f"from  {_when(card.iat)}", False),
        (7, f"until {_when(card.exp)}", False),
        (7, "(UTC+7)", False),
        (7, "ref " + " ".join(ref[:4]), False),
        (7, "    " + " ".join(ref[4:]), False),
    ]
    if card.name:
        lines.append((8, card.name, True))
    for i, (size, text, bold) in enumerate(lines):
        out.append(_text(tx, top - i * 9.5, size, text, bold))
    return "".join(out)


def _page(cards: Sequence[Card]) -> str:
    margin_x = (A4[0] - COLUMNS * CARD_W) / 2
    margin_y = (A4[1] - ROWS * CARD_H) / 2
    parts = []
    for i, card in enumerate(cards):
        col, row = i % COLUMNS, i // COLUMNS
        parts.append(_card(card, margin_x + col * CARD_W, A4[1] - margin_y - (row + 1) * CARD_H))
    return "".join(parts)


def write_cards_pdf(cards: Sequence[Card], path: Path) -> Path:
    """A4 pages of cards, ready to print at 100 % and cut along the grey lines."""
    per_page = COLUMNS * ROWS
    pages = [cards[i : i + per_page] for i in range(0, len(cards), per_page)] or [[]]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # pages tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    kids = []
    for page in pages:
        stream = _page(page).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_ref = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (A4[0], A4[1], content_ref)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    data = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    Path(path).write_bytes(bytes(data))
    return Path(path)
