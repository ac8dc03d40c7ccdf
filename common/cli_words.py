"""Words for the identifiers command lines show people: pass kinds, event types, clock states,
verdicts and reasons (common/reason_texts.py). JSON and CSV keep the identifiers; a table or a
line for people shows these, in the reader's language (common/i18n.cli_translator)."""

from common.i18n import N_, Translator
from common.reason_texts import reason_text, verdict_text

KIND_WORDS = {  # protocol/trust.py PASS_KINDS (the cards use the same words)
    "declaration": N_("Health declaration"),
    "vaccination": N_("Vaccination"),
    "test": N_("Test result"),
    "recovery": N_("Recovery"),
}
EVENT_TYPE_WORDS = {  # protocol/events.py event types
    "scan": N_("scan"),
    "manual": N_("manual entry"),
    "load": N_("load"),
}
CLOCK_WORDS = {  # protocol/clock.py states, as the gateway page says them
    "synced": N_("on time"),
    "bounded": N_("not synced (approximate)"),
    "unknown": N_("unknown: not trusted"),
}


def word(table: dict[str, str], value: object, tr: Translator) -> str:
    """The table's word for `value`; a value not in it (data) as it is; None as ""."""
    if value is None:
        return ""
    message = table.get(str(value))
    return tr.gettext(message) if message else str(value)


def reason_word(code: str | None, tr: Translator) -> str:
    """The reason's short words ("Hết hạn"); "" for none."""
    return reason_text(code, tr).short if code else ""


def verdict_word(verdict: str | None, tr: Translator) -> str:
    return verdict_text(verdict, tr) if verdict else ""
