"""Every message a person reads has a Vietnamese translation, the compiled catalogs match the
.po files under version control, and every reason code has its words."""

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from common.i18n import LOCALE_DIR, from_accept_language, normalize, translator
from common.reason_texts import REASON_TEXTS, reason_text
from protocol.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")


def source_messages() -> set[str]:
    """What `make i18n` extracts from babel.cfg's sources, right now."""
    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


def catalog(lang: str):
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "chot.po", "rb") as f:
        return read_po(f, locale=lang)


def test_every_source_message_has_a_vietnamese_translation() -> None:
    vi = catalog("vi")
    messages = source_messages()
    assert len(messages) > 150  # the extraction really ran over the sources
    missing = sorted(m for m in messages if m not in vi or not vi[m].string)
    assert not missing, f"run `make i18n` and translate: {missing}"
    fuzzy = sorted(m.id for m in vi if m.id and m.fuzzy)
    assert not fuzzy, f"fuzzy (unchecked) translations: {fuzzy}"


def test_translations_keep_their_placeholders() -> None:
    for message in catalog("vi"):
        if message.id:
            assert sorted(PLACEHOLDER.findall(message.id)) == sorted(
                PLACEHOLDER.findall(message.string)
            ), message.id


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_compiled_catalog_matches_the_po_file(lang: str) -> None:
    """The .mo the code reads says what the .po under version control says."""
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "chot.mo", "rb") as f:
        compiled = gettext.GNUTranslations(f)
    for message in catalog(lang):
        if message.id:
            assert compiled.gettext(message.id) == (message.string or message.id), message.id


def test_both_catalogs_list_the_same_messages() -> None:
    assert {m.id for m in catalog("vi")} == {m.id for m in catalog("en")}


def test_every_reason_code_has_words_in_both_languages() -> None:
    assert {r.value for r in Reason} <= set(REASON_TEXTS)
    vi, en = translator("vi"), translator("en")
    expired = reason_text("expired", vi)
    assert expired.line() == "Hết hạn — yêu cầu khai báo lại"
    assert reason_text("expired", en).line() == "Expired — ask the person to declare again"
    for code in REASON_TEXTS:
        assert reason_text(code, vi).short != reason_text(code, en).short, code


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("vi-VN,vi;q=0.9,en;q=0.8", "vi"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9", None),
        ("fr;q=1, en;q=0.5, vi;q=0.7", "vi"),
        ("vi;q=0, en", "en"),
        ("", None),
    ],
)
def test_accept_language(header: str, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_normalize_tags() -> None:
    assert normalize("vi_VN.UTF-8") == "vi"
    assert normalize("EN") == "en"
    assert normalize("C.UTF-8") is None
