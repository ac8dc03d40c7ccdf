"""What `chot central …` prints for people: tables with headings and words in the command
line's language (CHOT_LANG or the locale, Vietnamese otherwise), times in the site's time zone
(ISO 8601 with its offset). `--json` and `--csv` keep the English keys, codes and Unix ms:
they are for scripts and spreadsheets."""

import datetime as dt
from typing import Any

from common.cli_words import (
    CLOCK_WORDS,
    EVENT_TYPE_WORDS,
    KIND_WORDS,
    reason_word,
    verdict_word,
    word,
)
from common.i18n import N_, Phrase, Translator
from common.localtime import local, zone
from common.reason_texts import VERDICT_TEXTS

COLUMNS = {  # every key the queries and reports return (central/queries.py, reports.py)
    "t": N_("Time"),
    "at": N_("Time"),
    "site": N_("Site"),
    "dev": N_("Scanner"),
    "gateway": N_("Gateway"),
    "lane": N_("Lane"),
    "typ": N_("Type"),
    "verdict": N_("Verdict"),
    "reason": N_("Reason"),
    "ref": N_("Pass reference"),
    "kind": N_("Pass type"),
    "clock": N_("Clock"),
    "sub": N_("Pseudonym"),
    "first_t": N_("First seen"),
    "last_t": N_("Last seen"),
    "events": N_("Events"),
    "min_gap_ms": N_("Closest (ms)"),
    "day": N_("Day"),
    "period": N_("Period"),
    "total": N_("Total"),
    "pass": N_("Passed"),
    "fail": N_("Refused"),
    "warn": N_("Checked by hand"),
    "fail_reasons": N_("Refusal reasons"),
    "reasons": N_("Refusal reasons"),
    "scans": N_("Scans"),
    "manual": N_("Manual entries"),
    "declarations": N_("Declarations"),
    "accepted": N_("Accepted"),
    "rejected": N_("Rejected"),
    "scan_pass": N_("Scans passed"),
    "scan_fail": N_("Scans refused"),
    "scan_warn": N_("Scans checked by hand"),
    "manual_admitted": N_("Manual admitted"),
    "manual_turned_away": N_("Manual turned away"),
    "hour": N_("Hour"),
    "load": N_("Load reports"),
    "clock_synced": N_("Clock on time"),
    "clock_bounded": N_("Clock approximate"),
    "clock_unknown": N_("Clock unknown"),
    "last_received": N_("Last received"),
    "received_at": N_("Received"),
    "extra": N_("Details"),
    "count": N_("Events"),
    "min_seq": N_("First number"),
    "max_seq": N_("Last number"),
    "missing": N_("Missing"),
    "epochs": N_("Outbox epochs"),
    "operator": N_("Operator"),
    "via": N_("Via"),
    "query": N_("Query"),
    "params": N_("Parameters"),
    "row_count": N_("Rows"),
}
TIME_COLUMNS = frozenset({"t", "at", "first_t", "last_t", "last_received", "received_at"})
MANUAL_WORDS = {"admitted": N_("admitted"), "turned_away": N_("turned away")}


def iso_time(ms: Any, tz: str | None) -> str:
    """Unix ms -> "2021-08-01T07:10:00+07:00" in the site's zone; "" for none; a time
    already written as text as it is."""
    if isinstance(ms, str):
        return ms
    return local(ms, tz).isoformat(timespec="seconds") if isinstance(ms, int) and ms else ""


def _hour(value: Any, tz: str | None) -> str:
    """The health query's UTC hour ("2021-08-01T00:00Z") in the site's zone."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.astimezone(zone(tz)).isoformat(timespec="minutes")


def _counts(counts: dict, say: Any) -> str:
    """ "Hết hạn: 2; Đã thu hồi: 1" from {"expired": 2, "revoked": 1}."""
    return "; ".join(f"{say(k)}: {v}" for k, v in sorted(counts.items()) if v is not None)


def cell(key: str, value: Any, tr: Translator, tz: str | None) -> str:
    """One table cell: codes as words, times in the site's zone, numbers as they are."""
    if value is None:
        return ""
    if key in TIME_COLUMNS:
        return iso_time(value, tz)
    if key == "hour":
        return _hour(value, tz)
    if key == "verdict":
        return verdict_word(value, tr)
    if key == "reason":
        return reason_word(value, tr)
    if key in ("fail_reasons", "reasons") and isinstance(value, dict):
        return _counts(value, lambda code: reason_word(code, tr))
    if key == "scans" and isinstance(value, dict):
        return _counts(value, lambda verdict: verdict_word(verdict, tr))
    if key == "manual" and isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k in MANUAL_WORDS}
        return _counts(kept, lambda k: tr.gettext(MANUAL_WORDS[k]))
    if key == "typ":
        return word(EVENT_TYPE_WORDS, value, tr)
    if key == "kind":
        return word(KIND_WORDS, value, tr)
    if key == "clock":
        return word(CLOCK_WORDS, value, tr)
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def table(rows: list[dict], tr: Translator, tz: str | None) -> list[str]:
    """Aligned lines: the headings, then one line per row."""
    if not rows:
        return [tr.gettext(N_("(no rows)"))]
    names = list(rows[0])
    heads = [tr.gettext(COLUMNS[n]) if n in COLUMNS else n for n in names]
    cells = [[cell(n, row.get(n), tr, tz) for n in names] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return [line.rstrip() for line in lines]


def stats_summary(stats: dict, tr: Translator) -> str:
    """The store's totals above the per-scanner table of `chot central stats`."""
    no_verdict = tr.gettext(N_("no verdict"))
    verdicts = _counts(
        stats.get("by_verdict", {}),
        lambda v: verdict_word(v, tr) if v in VERDICT_TEXTS else no_verdict,
    )
    return Phrase(
        N_("Events at the centre: {events}; duplicates: {duplicates}; {verdicts}"),
        {
            "events": stats.get("events_central", 0),
            "duplicates": stats.get("duplicates", 0),
            "verdicts": verdicts or "-",
        },
    ).render(tr)
