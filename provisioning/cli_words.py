"""What `chot provision …` and `chot pass issue` print for people, in the command line's
language (CHOT_LANG or the locale, Vietnamese otherwise: common/i18n.cli_translator).

Handlers give `Output.lines` as plain strings (data: a QR text, a pseudonym) or `Phrase`s
(fixed words with data in them); a handler without lines shows its data as "Label: value"
lines, the labels from FIELD_LABELS. `--json` prints the data with its English keys, always.
"""

from common.i18n import N_, Phrase, Translator, say

FIELD_LABELS = {  # the data keys handlers return (JSON keys stay these identifiers)
    "home": N_("Ops home"),
    "root_public_key": N_("Root public key"),
    "issuer": N_("Issuer"),
    "kid": N_("Key id"),
    "public_key": N_("Public key"),
    "kinds": N_("Pass types"),
    "status": N_("Status"),
    "local": N_("Key held here"),
    "not_before": N_("Valid from (Unix s)"),
    "not_after": N_("Valid until (Unix s)"),
    "max_validity": N_("Longest validity per type (s)"),
    "trust_version": N_("Trust list version"),
    "encrypted": N_("Root key sealed with a passphrase"),
    "default_issuer": N_("Default issuer"),
    "document": N_("Document"),
    "version": N_("Version"),
    "bytes": N_("Size (bytes)"),
    "out": N_("Written to"),
    "path": N_("Written to"),
    "revoked": N_("Revoked"),
    "revocation_version": N_("Revocation list version"),
    "device": N_("Scanner"),
    "gateway": N_("Gateway"),
    "site": N_("Site"),
    "lane": N_("Lane"),
    "bundle": N_("Bundle folder"),
    "timesyncd": N_("Time sync file"),
    "chrony": N_("Time server file"),
    "operator": N_("Operator"),
    "users_file": N_("Logins file"),
    "config": N_("Configuration"),
    "folder": N_("Folder"),
    "dscs": N_("Signing certificates"),
    "added": N_("Added"),
    "sub": N_("Pseudonym"),
}
STATUS_WORDS = {  # an issuer key's or a unit's state
    "active": N_("active"),
    "retired": N_("retired"),
    "revoked": N_("revoked"),
}
ROLE_WORDS = {"device": N_("scanner"), "gateway": N_("gateway")}
YES, NO = N_("yes"), N_("no")


def word(table: dict[str, str], value: str) -> Phrase | str:
    """A Phrase for a known identifier (translated when printed); other values as they are."""
    return Phrase(table[value]) if value in table else value


def field_lines(data: dict, tr: Translator) -> list[str]:
    """ "Label: value" for each field with a value; True/False as yes/no."""
    lines = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = tr.gettext(YES if value else NO)
        elif isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        label = tr.gettext(FIELD_LABELS[key]) if key in FIELD_LABELS else key
        lines.append(f"{label}: {value}")
    return lines


def human_lines(data: dict | list, lines: list | None, tr: Translator) -> list[str] | None:
    """What people read; None when only the data itself (JSON) can show it."""
    if lines is not None:
        return [say(line, tr) for line in lines]
    if isinstance(data, dict):
        return field_lines(data, tr)
    return None
