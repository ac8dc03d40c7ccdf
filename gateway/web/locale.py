"""Which language and time zone a page is shown in, and the Jinja2 environment that does it.

Language: the in-page switch (`?lang=en`, kept for the session in a cookie), else the
browser's Accept-Language when it names a language chot speaks, else the site's `language`.
Time: always the site's `timezone`, on page load and in the live feed alike (status.js formats
with the same zone), never the browser's or the gateway machine's.
"""

from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from common import localtime
from common.i18n import LANGUAGE_NAMES, LANGUAGES, Translator, from_accept_language, normalize
from gateway.config import GatewayConfig
from gateway.web.texts import page_texts

LANG_COOKIE = "chot_lang"

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.add_extension("jinja2.ext.i18n")  # {% trans %}; gettext comes per page


@pass_context
def _clock(context: Context, ms: int | None) -> str:
    return localtime.clock(ms, context.get("site_tz"))


@pass_context
def _datetime(context: Context, ms: int | None) -> str:
    return localtime.date_time(ms, context.get("site_tz"))


templates.env.filters["clock"] = _clock
templates.env.filters["datetime"] = _datetime


def choose_language(request: Request, site_default: str) -> tuple[str, bool]:
    """(language, whether the switch was used now and the cookie must be set)."""
    switched = normalize(request.query_params.get("lang"))
    if switched:
        return switched, True
    chosen = normalize(request.cookies.get(LANG_COOKIE)) or from_accept_language(
        request.headers.get("accept-language")
    )
    return chosen or normalize(site_default) or LANGUAGES[0], False


def remember_language(response: Response, lang: str, secure: bool) -> None:
    """The switch holds for this browser session (no Max-Age: gone when the browser closes)."""
    response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="strict", secure=secure)


def locale_context(request: Request, config: GatewayConfig, lang: str) -> dict[str, Any]:
    """What every template needs to speak `lang` and show the site's time."""
    tr = Translator(lang)
    tz = config.timezone
    return {
        "lang": lang,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
        "_": tr.gettext,
        "tr": tr,
        "site_tz": tz,
        "tz_label": f"{tz} ({localtime.offset_label(tz)})",
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        "switch_path": request.url.path,
        "page_texts": page_texts(tr),  # for status.js, through the tojson filter
    }
