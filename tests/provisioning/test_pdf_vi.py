"""Printed cards carry Vietnamese names and labels as real text: pdftotext reads back
"Trần Thị Bình" with every diacritic, the labels in the site's language, the validity in the
site's time zone; and the QR on the card still scans to the same pass."""

import subprocess
from pathlib import Path

from PIL import Image

from harness.vectors import load_vector
from provisioning.pdf import Card, write_cards_pdf

NAME = "Trần Thị Bình"
IAT = 1_700_000_000  # 2023-11-14 22:13 UTC = 2023-11-15 05:13 in Ho Chi Minh City
EXP = IAT + 72 * 3600
QR_TEXT = load_vector("chot-pass-v1.json")["qr_text"]


def pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def card() -> Card:
    return Card(QR_TEXT, "declaration", "VN-HCM", IAT, EXP, bytes(range(16)), NAME)


def test_vietnamese_card_keeps_diacritics_labels_and_local_time(tmp_path: Path) -> None:
    path = write_cards_pdf([card()], tmp_path / "card.pdf")
    text = pdf_text(path)
    assert NAME in text
    assert "Thẻ thông hành y tế" in text and "Khai báo y tế" in text
    assert "Hiệu lực từ: 2023-11-15 05:13" in text
    assert "Đến hết: 2023-11-18 05:13" in text
    assert "(UTC+07:00)" in text
    assert NAME.encode() not in path.read_bytes()  # text is embedded glyphs, not a raw string


def test_english_card_and_another_time_zone(tmp_path: Path) -> None:
    path = write_cards_pdf([card()], tmp_path / "card.pdf", language="en", timezone="Europe/Berlin")
    text = pdf_text(path)
    assert NAME in text and "Health declaration" in text
    assert "Valid from: 2023-11-14 23:13" in text and "(UTC+01:00)" in text


def test_no_name_unless_asked(tmp_path: Path) -> None:
    anonymous = Card(QR_TEXT, "declaration", "VN-HCM", IAT, EXP, bytes(16))
    text = pdf_text(write_cards_pdf([anonymous], tmp_path / "card.pdf"))
    assert "Bình" not in text and "Khai báo y tế" in text


def test_card_qr_still_scans(tmp_path: Path) -> None:
    import zxingcpp

    path = write_cards_pdf([card()], tmp_path / "card.pdf")
    subprocess.run(
        ["pdftoppm", "-png", "-r", "150", str(path), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    [page] = sorted(tmp_path.glob("page*.png"))
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(page))]
    assert QR_TEXT in found
