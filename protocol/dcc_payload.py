"""The hcert v1 payload (EU DCC schema 1.3): CBOR map -> a typed `DccCertificate`, strictly.

A DCC holds exactly one of `v` (vaccination), `t` (test) or `r` (recovery), each an array of
exactly one entry. Every field the site rules read is type-checked here and dates are turned
into Unix seconds (UTC), so the rules in `dcc_policy` never parse text. Any violation is
`bad_claims`. `nam`, `dob` and `ci` are personal data: they stay in this object, on the device.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from protocol.reasons import ProtocolError, Reason

KIND_KEYS = {"v": "vaccination", "t": "test", "r": "recovery"}
MAX_CI_LENGTH = 80  # schema: UVCI maxLength 80
MAX_TEXT = 256  # every other text field is far shorter in the schema
_REQUIRED = {
    "v": ("tg", "vp", "mp", "ma", "dn", "sd", "dt", "co", "is", "ci"),
    "t": ("tg", "tt", "sc", "tr", "co", "is", "ci"),
    "r": ("tg", "fr", "co", "is", "df", "du", "ci"),
}
_INTS = frozenset({"dn", "sd"})


@dataclass(frozen=True, slots=True)
class DccCertificate:
    """One certificate's content. Times are Unix seconds (dates at 00:00 UTC)."""

    kind: str  # vaccination | test | recovery
    version: str  # `ver`, e.g. "1.3.0"
    ci: str  # unique certificate identifier: personal, never published
    disease: str  # tg
    country: str  # co
    family_name: str  # nam.fnt (ICAO transliteration): personal
    dob: str  # personal
    dose_number: int | None = None  # dn
    total_doses: int | None = None  # sd
    vaccinated_at: int | None = None  # dt
    test_result: str | None = None  # tr
    sampled_at: int | None = None  # sc
    valid_from: int | None = None  # df
    valid_until: int | None = None  # du (the whole day counts)


_LIMITS = {"ci": MAX_CI_LENGTH, "co": 2, "dt": 10, "df": 10, "du": 10, "fr": 10, "sc": 40}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _text(mapping: dict, key: str, limit: int = MAX_TEXT) -> str:
    value = mapping.get(key)
    if type(value) is not str or len(value) > limit:
        raise ProtocolError(Reason.BAD_CLAIMS, f"{key} must be text of at most {limit}")
    return value


def _date(text: str, key: str) -> int:
    """YYYY-MM-DD -> Unix seconds at 00:00 UTC (arithmetic on the ordinal: no datetime)."""
    try:
        if len(text) != 10:
            raise ValueError
        return (date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL) * 86400
    except ValueError:
        raise ProtocolError(Reason.BAD_CLAIMS, f"{key} must be a YYYY-MM-DD date") from None


def _datetime(text: str, key: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(Reason.BAD_CLAIMS, f"{key} must be an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ProtocolError(Reason.BAD_CLAIMS, f"{key} needs a time zone (Z or +hh:mm)")
    return int(moment.timestamp())


def _entry_fields(group: str, entry: dict) -> dict[str, Any]:
    """Every required field of the entry, type- and length-checked."""
    fields: dict[str, Any] = {}
    for key in _REQUIRED[group]:
        value = entry.get(key)
        if key in _INTS:
            if type(value) is not int or not 1 <= value <= 9:
                raise ProtocolError(Reason.BAD_CLAIMS, f"{group}.{key} must be 1..9")
        elif type(value) is not str or len(value) > _LIMITS.get(key, MAX_TEXT):
            raise ProtocolError(Reason.BAD_CLAIMS, f"{group}.{key} must be short text")
        fields[key] = value
    return fields


def parse_hcert(hcert: Any) -> DccCertificate:
    """The hcert v1 map (claim -260 -> 1). Unknown keys are ignored, as the schema allows."""
    if type(hcert) is not dict:
        raise ProtocolError(Reason.BAD_CLAIMS, "hcert must be a map")
    present = [k for k in KIND_KEYS if k in hcert]
    if len(present) != 1:
        raise ProtocolError(Reason.BAD_CLAIMS, "exactly one of v, t, r is required")
    group = present[0]
    entries = hcert[group]
    if type(entries) is not list or len(entries) != 1 or type(entries[0]) is not dict:
        raise ProtocolError(Reason.BAD_CLAIMS, f"{group} must hold exactly one entry")
    nam = hcert.get("nam")
    if type(nam) is not dict:
        raise ProtocolError(Reason.BAD_CLAIMS, "nam must be a map")
    for key in ("fn", "gn", "gnt"):
        if key in nam:
            _text(nam, key, 80)
    f = _entry_fields(group, entries[0])
    extra: dict[str, Any] = {}
    if group == "v":
        extra = {
            "dose_number": f["dn"],
            "total_doses": f["sd"],
            "vaccinated_at": _date(f["dt"], "dt"),
        }
    elif group == "t":
        extra = {"test_result": f["tr"], "sampled_at": _datetime(f["sc"], "sc")}
    else:
        _date(f["fr"], "fr")
        extra = {"valid_from": _date(f["df"], "df"), "valid_until": _date(f["du"], "du")}
        if extra["valid_until"] < extra["valid_from"]:
            raise ProtocolError(Reason.BAD_CLAIMS, "r.du before r.df")
    return DccCertificate(
        kind=KIND_KEYS[group],
        version=_text(hcert, "ver", 16),
        ci=f["ci"],
        disease=f["tg"],
        country=f["co"],
        family_name=_text(nam, "fnt", 80),
        dob=_text(hcert, "dob", 10),
        **extra,
    )
