"""Vietnamese and English for every text a person at the checkpoint reads.

Messages are written in English in the code (`_("...")`, or `N_("...")` in tables translated
later) and translated by gettext catalogs: common/locale/{vi,en}/LC_MESSAGES/chot.po, compiled
to .mo by `make i18n` (Babel extracts from babel.cfg's sources). At run time only the standard
library reads the .mo files, so a scanner unit needs no Babel.

JSON output, reason codes and log lines stay English identifiers: they are contracts.
"""

import gettext
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN = "chot"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("vi", "en")  # what the catalogs cover; the first is the project's default
DEFAULT_LANGUAGE = "vi"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}
ENV_LANGUAGE = "CHOT_LANG"  # the command line's language (else LANGUAGE / LC_ALL / LANG)


def N_(message: str) -> str:
    """Mark a message for extraction where it is stored, translate it where it is shown."""
    return message


def normalize(tag: str | None) -> str | None:
    """A supported language from a tag like "vi-VN", "en_US.UTF-8" or "EN"; else None."""
    if not tag:
        return None
    base = tag.strip().replace("_", "-").split("-")[0].split(".")[0].lower()
    return base if base in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser ranks highest (RFC 9110 q-values), or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        tag, _sep, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = normalize(tag)
        if lang and q > 0:
            ranked.append((-q, position, lang))
    return min(ranked)[2] if ranked else None


def from_environment() -> str | None:
    """The command line's language: CHOT_LANG, then the POSIX locale variables."""
    for name in (ENV_LANGUAGE, "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            for tag in value.split(":"):
                lang = normalize(tag)
                if lang:
                    return lang
    return None


@cache
def _catalog(lang: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    try:
        with open(path, "rb") as f:
            return gettext.GNUTranslations(f)
    except FileNotFoundError:
        if lang != "en":  # English is the source language: its catalog may be empty
            log.error("no compiled catalog %s (run `make i18n`); showing English", path)
        return gettext.NullTranslations()


@dataclass(frozen=True)
class Translator:
    """One language's gettext; passed to templates as `gettext`/`ngettext`/`_`."""

    lang: str

    def gettext(self, message: str) -> str:
        return _catalog(self.lang).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return _catalog(self.lang).ngettext(singular, plural, n)

    _ = gettext


def translator(lang: str | None = None) -> Translator:
    """The Translator for `lang` (any tag; unsupported or None -> the default language)."""
    return Translator(normalize(lang) or DEFAULT_LANGUAGE)


@dataclass(frozen=True)
class Phrase:
    """A fixed sentence with data in it, translated where it is printed: `message` is the
    msgid (marked with N_ where it is written) with {name} placeholders, `values` the data,
    shown as they are ("revoked {count} live passes" -> "đã thu hồi 3 thẻ còn hiệu lực")."""

    message: str
    values: dict[str, object] = field(default_factory=dict)

    def render(self, tr: Translator) -> str:
        """Values that are Phrases themselves (a status word) are translated too."""
        values = {k: say(v, tr) if isinstance(v, Phrase) else v for k, v in self.values.items()}
        return tr.gettext(self.message).format(**values)


def say(line: "str | Phrase", tr: Translator) -> str:
    """A printed line: a Phrase in the reader's language; a plain string (data such as a QR
    text or a key) exactly as it is."""
    return line.render(tr) if isinstance(line, Phrase) else line


def cli_translator(default: str | None = None) -> Translator:
    """The command line's language: the environment, else `default`, else Vietnamese."""
    return translator(from_environment() or default)
