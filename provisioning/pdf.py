"""Printable pass cards as PDF, with names printed right ("Trần Thị Bình", not "Tran Thi Binh").

Ten credit-card-sized cards (85.6 x 54 mm) per A4 page, each with the QR drawn as vector
squares (sharp at any printer resolution) at 39 mm or more, the kind, the validity period in
the site's time zone and the pass reference to read over the phone, labelled in the site's
language. fpdf2 embeds a subset of DejaVu Sans (Debian's fonts-dejavu-core), which covers
Vietnamese, so the text is real text that a reader or pdftotext gets back with its diacritics.
No name, document number or birth date unless the caller asks (`print_name`).
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from common import localtime
from common.i18n import N_, Translator, translator
from provisioning.passes import format_pass_ref
from provisioning.qr import BORDER, module_rows

CARD_W, CARD_H = 85.6, 54.0  # mm
QR_BOX = 46.0  # symbol + quiet zone; the symbol itself is >= 39 mm for versions <= 10
COLUMNS, ROWS = 2, 5
FONT_ENV = "CHOT_CARD_FONT"  # a .ttf covering Vietnamese, for systems without DejaVu
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Debian: fonts-dejavu-core
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",  # Debian: fonts-noto-core
)
KIND_TEXT = {
    "declaration": N_("Health declaration"),
    "vaccination": N_("Vaccination"),
    "test": N_("Test result"),
    "recovery": N_("Recovery"),
}


class FontMissing(RuntimeError):
    """No font that can print Vietnamese: install fonts-dejavu-core or set CHOT_CARD_FONT."""


@dataclass(frozen=True)
class Card:
    qr_text: str
    kind: str
    issuer: str
    iat: int
    exp: int
    pass_ref: bytes
    name: str | None = None  # printed only when given: the caller decides (opt-in)


def card_font() -> Path:
    for candidate in (os.environ.get(FONT_ENV), *FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing(
        "no font for Vietnamese text: `apt-get install fonts-dejavu-core` (Debian) or set "
        f"{FONT_ENV} to a .ttf file"
    )


def _draw_card(pdf: FPDF, card: Card, x: float, y: float, tr: Translator, tz: str) -> None:
    """One card whose top-left corner is (x, y), in mm."""
    pdf.set_draw_color(179)
    pdf.set_line_width(0.2)
    pdf.rect(x, y, CARD_W, CARD_H)
    rows = module_rows(card.qr_text)
    n = len(rows)
    module = QR_BOX / (n + 2 * BORDER)
    qx, qy = x + 2, y + (CARD_H - QR_BOX) / 2
    pdf.set_fill_color(0)
    for r, row in enumerate(rows):
        c = 0
        while c < n:  # one rectangle per run of dark modules
            if not row[c]:
                c += 1
                continue
            start = c
            while c < n and row[c]:
                c += 1
            pdf.rect(
                qx + (BORDER + start) * module,
                qy + (BORDER + r) * module,
                (c - start) * module,
                module,
                style="F",
            )
    ref = format_pass_ref(card.pass_ref).split(" ")
    offset = localtime.offset_label(tz, card.iat * 1000)
    lines = [
        (10, tr.gettext("Health pass"), True),
        (8.5, tr.gettext(KIND_TEXT.get(card.kind, card.kind)), True),
        (6.5, tr.gettext("Issuer: {issuer}").format(issuer=card.issuer), False),
        (6.5, tr.gettext("Valid from: {when}").format(when=localtime.minutes(card.iat, tz)), False),
        (
            6.5,
            tr.gettext("Valid until: {when}").format(when=localtime.minutes(card.exp, tz)),
            False,
        ),
        (6.5, f"({offset})", False),
        (6.5, tr.gettext("Ref: {ref}").format(ref=" ".join(ref[:4])), False),
        (6.5, "      " + " ".join(ref[4:]), False),
    ]
    if card.name:
        lines.append((8, card.name, True))
    for i, (size, text, bold) in enumerate(lines):
        pdf.set_font("card-bold" if bold else "card", size=size)
        pdf.text(x + 50, y + 8 + i * 3.4, text)


def write_cards_pdf(
    cards: Sequence[Card], path: Path, *, language: str | None = None, timezone: str | None = None
) -> Path:
    """A4 pages of cards, ready to print at 100 % and cut along the grey lines; labels in
    `language` (default Vietnamese), times in `timezone` (default Asia/Ho_Chi_Minh)."""
    tr = translator(language)
    tz = timezone or localtime.DEFAULT_TIMEZONE
    font = card_font()
    bold = font.with_name(font.name.replace("Sans.ttf", "Sans-Bold.ttf"))
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_creator("chot")
    pdf.set_lang(tr.lang)
    pdf.add_font("card", fname=str(font))
    pdf.add_font("card-bold", fname=str(bold if bold.is_file() else font))
    per_page = COLUMNS * ROWS
    pages = [cards[i : i + per_page] for i in range(0, len(cards), per_page)] or [[]]
    margin_x = (210 - COLUMNS * CARD_W) / 2
    margin_y = (297 - ROWS * CARD_H) / 2
    for page in pages:
        pdf.add_page()
        for i, card in enumerate(page):
            col, row = i % COLUMNS, i // COLUMNS
            _draw_card(pdf, card, margin_x + col * CARD_W, margin_y + row * CARD_H, tr, tz)
    pdf.output(str(path))
    return Path(path)
