"""What each reason code means to the person at the gate, and what to do about it.

The codes (protocol/reasons.py) are the contract and stay English identifiers in JSON, events
and logs; these texts are what a screen, the status page or `chot pass verify` shows, in the
reader's language: a short phrase, then the action ("Expired — ask the person to declare
again").
"""

from dataclasses import dataclass

from common.i18n import N_, Translator

_UNREADABLE = (N_("Damaged or fake QR"), N_("Ask for another copy or check a paper declaration"))
_FORGED = (N_("Forged pass"), N_("Do not let through; call the supervisor"))
_TECHNICAL = (N_("Refused by the system"), N_("Call the technician"))
_BY_HAND = N_("Check the pass and ID card by hand; call the technician")

# code -> (short text, action): every code of protocol.reasons.Reason (a test checks it)
REASON_TEXTS: dict[str, tuple[str, str]] = {
    "ok": (N_("Valid"), N_("Let the person through")),
    "not_chot": (N_("Not a health pass QR"), N_("Ask for the health pass QR")),
    "bad_base45": _UNREADABLE,
    "bad_zlib": _UNREADABLE,
    "too_large": _UNREADABLE,
    "bad_cbor": _UNREADABLE,
    "bad_cose": _UNREADABLE,
    "bad_alg": _UNREADABLE,
    "unknown_kid": (
        N_("Issuer not recognised"),
        N_("Check the ID card and paper declaration; tell the supervisor"),
    ),
    "bad_signature": _FORGED,
    "bad_claims": (N_("Pass content invalid"), N_("Ask the person to declare again")),
    "issuer_mismatch": _FORGED,
    "kind_not_allowed": (
        N_("Pass type not accepted here"),
        N_("Send the person to the right checkpoint"),
    ),
    "not_yet_valid": (
        N_("Not valid yet"),
        N_("Check the scanner's clock; ask the person to come back later"),
    ),
    "expired": (N_("Expired"), N_("Ask the person to declare again")),
    "validity_too_long": (
        N_("Valid longer than its type allows"),
        N_("Ask the person to declare again; tell the supervisor"),
    ),
    "revoked": (N_("Revoked"), N_("Do not let through; call the supervisor")),
    "trust_stale": (N_("Trust list out of date"), N_("Check by hand; update the trust list")),
    "no_trust_list": (N_("No trust list on the scanner"), _BY_HAND),
    "clock_untrusted": (N_("Scanner clock not trusted"), _BY_HAND),
    "duplicate_recent": (
        N_("Scanned a moment ago"),
        N_("Nothing to do if it is the same person"),
    ),
    "rollback": (N_("Older list refused"), N_("Call the technician")),
    "wrong_type": (N_("Wrong document type refused"), N_("Call the technician")),
    "bad_event": _TECHNICAL,
    "unknown_device": (N_("Unknown scanner"), N_("Call the technician")),
    "device_revoked": (N_("Scanner revoked"), N_("Call the technician")),
    "topic_mismatch": _TECHNICAL,
    "out_of_range": _TECHNICAL,
    "store_refused": _TECHNICAL,
    "dsc_not_in_force": (
        N_("Certificate signer not valid now"),
        N_("Ask for another certificate or a declaration"),
    ),
    "dsc_kind_not_allowed": (
        N_("Signer may not issue this certificate type"),
        N_("Ask for another certificate or a declaration"),
    ),
    "wrong_disease": (
        N_("Not a COVID-19 certificate"),
        N_("Ask for the COVID-19 certificate"),
    ),
    "vaccination_incomplete": (
        N_("Vaccination not complete"),
        N_("Ask for a test result or a declaration"),
    ),
    "vaccination_too_recent": (
        N_("Last dose too recent"),
        N_("Ask for a test result or a declaration"),
    ),
    "test_positive": (
        N_("Positive test"),
        N_("Do not let through; send the person to the health staff"),
    ),
    "test_too_old": (N_("Test too old"), N_("Ask for a new test result")),
    "recovery_not_valid": (
        N_("Recovery certificate not valid today"),
        N_("Ask for another certificate or a declaration"),
    ),
}

VERDICT_TEXTS = {
    "pass": N_("Pass"),
    "fail": N_("Refused"),
    "warn": N_("Check by hand"),
}


@dataclass(frozen=True)
class ReasonText:
    code: str
    short: str
    action: str

    def line(self) -> str:
        """ "Expired — ask the person to declare again"."""
        return f"{self.short} — {self.action[:1].lower()}{self.action[1:]}"


def reason_text(code: str | None, tr: Translator) -> ReasonText:
    """Translated texts for a reason code; an unknown code shows as itself."""
    code = code or "ok"
    pair = REASON_TEXTS.get(code)
    if pair is None:
        return ReasonText(code, code.replace("_", " "), tr.gettext("Call the technician"))
    return ReasonText(code, tr.gettext(pair[0]), tr.gettext(pair[1]))


def verdict_text(verdict: str | None, tr: Translator) -> str:
    message = VERDICT_TEXTS.get(verdict or "")
    return tr.gettext(message) if message else str(verdict)
