"""Reports health staff read: totals per checkpoint and per period, CSV, JSON and a web page.

The figures are the ones a health department reports ("HCMC, 2 days: 96,347 declarations,
95,118 accepted, 1,229 rejected"): per checkpoint (site) and local day, and over the whole
period, how many people were checked (``declarations``: scans and manual entries), how many
were let in (``accepted``: verdict pass, scanned or admitted by hand) and how many were not
(``rejected``: refused, or sent to a hand check that was not entered as admitted), refusals
by reason, and the manual entries counted apart (admitted / turned away). Days are local to
the centre's time zone (``timezone`` in the config).
"""

import csv
import datetime as dt
import io
from dataclasses import asdict, dataclass, field
from typing import Any

from central.queries import DEFAULT_TZ, PERSON_TYPES, day_range
from central.store import Store

MAX_DAYS = 366
CSV_COLUMNS = (
    "site",
    "period",
    "declarations",
    "accepted",
    "rejected",
    "scans",
    "scan_pass",
    "scan_fail",
    "scan_warn",
    "manual_admitted",
    "manual_turned_away",
    "reasons",
)


@dataclass
class Totals:
    """One checkpoint over one period (a day, or the whole range)."""

    site: str
    period: str  # "2021-09-01", or "2021-09-01..2021-09-02"
    declarations: int = 0
    accepted: int = 0
    rejected: int = 0
    scans: int = 0
    scan_pass: int = 0
    scan_fail: int = 0
    scan_warn: int = 0
    manual_admitted: int = 0
    manual_turned_away: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # refusals (scans and manual)

    def add(self, typ: str, verdict: str | None, reason: str | None, n: int) -> None:
        verdict = verdict if verdict in ("pass", "fail", "warn") else "fail"
        self.declarations += n
        if verdict == "pass":
            self.accepted += n
        else:
            self.rejected += n
        if typ == "manual":
            if verdict == "pass":
                self.manual_admitted += n
            else:
                self.manual_turned_away += n
        else:
            self.scans += n
            setattr(self, f"scan_{verdict}", getattr(self, f"scan_{verdict}") + n)
        if verdict != "pass":
            key = reason or "unknown"
            self.reasons[key] = self.reasons.get(key, 0) + n

    def merge(self, other: "Totals") -> None:
        for name in CSV_COLUMNS[2:-1]:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n


@dataclass
class Report:
    first_day: dt.date
    last_day: dt.date
    timezone: str
    days: list[Totals]  # per site and day, sorted
    sites: list[Totals]  # per site over the period
    overall: Totals  # every site over the period

    @property
    def period(self) -> str:
        if self.first_day == self.last_day:
            return self.first_day.isoformat()
        return f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "timezone": self.timezone,
            "overall": asdict(self.overall),
            "sites": [asdict(t) for t in self.sites],
            "days": [asdict(t) for t in self.days],
        }

    def to_csv(self) -> str:
        """One row per site and day, then one per site for the period, then all sites."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for t in [*self.days, *self.sites, self.overall]:
            row = asdict(t)
            row["reasons"] = ";".join(f"{k}={v}" for k, v in sorted(t.reasons.items()))
            writer.writerow([row[c] for c in CSV_COLUMNS])
        return out.getvalue()

    def lines(self) -> list[str]:
        """What a person reads first: the sentence the health department reports."""
        out = []
        for t in [*self.sites, self.overall]:
            refused = ", ".join(f"{k} {v:,}" for k, v in sorted(t.reasons.items()))
            out.append(
                f"{t.site}, {self.period}: {t.declarations:,} declarations, "
                f"{t.accepted:,} accepted, {t.rejected:,} rejected"
                + (f" ({refused})" if refused else "")
                + (
                    f"; manual entries {t.manual_admitted:,} admitted, "
                    f"{t.manual_turned_away:,} turned away"
                    if t.manual_admitted or t.manual_turned_away
                    else ""
                )
            )
        return out


def build_report(
    store: Store,
    first_day: dt.date,
    last_day: dt.date | None = None,
    *,
    site: str | None = None,
    tz: str = DEFAULT_TZ,
) -> Report:
    """Totals per checkpoint per local day, per checkpoint for the period, and overall."""
    last_day = last_day or first_day
    if last_day < first_day:
        raise ValueError("the period ends before it starts")
    count = (last_day - first_day).days + 1
    if count > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days in one report")
    days: list[Totals] = []
    for offset in range(count):
        day = first_day + dt.timedelta(days=offset)
        start, end = day_range(day, tz)
        rows = store.fetch(
            "SELECT site, typ, verdict, reason, COUNT(*) AS n FROM events "
            f"WHERE t >= :start AND t < :end AND typ IN {PERSON_TYPES} "
            + ("AND site = :site " if site else "")
            + "GROUP BY site, typ, verdict, reason",
            {"start": start, "end": end, "site": site},
        )
        per_site: dict[str, Totals] = {}
        for r in rows:
            totals = per_site.setdefault(r["site"], Totals(r["site"], day.isoformat()))
            totals.add(r["typ"], r["verdict"], r["reason"], int(r["n"]))
        days.extend(per_site[s] for s in sorted(per_site))
    report = Report(first_day, last_day, tz, days, [], Totals("all sites", ""))
    report.overall.period = report.period
    by_site: dict[str, Totals] = {}
    for t in days:
        by_site.setdefault(t.site, Totals(t.site, report.period)).merge(t)
        report.overall.merge(t)
    report.sites = [by_site[s] for s in sorted(by_site)]
    return report
