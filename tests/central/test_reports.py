"""Reports people read: the seed figures reproduced, on SQLite and on the real PostgreSQL.

"Ho Chi Minh City, two days: 96,347 declarations, 95,118 accepted, 1,229 rejected": the events
are generated into a central store (bulk insert through the store API), with noise that must
not count (another checkpoint, the day before, a gateway's load summary), and the report's
totals per checkpoint, per day and for the period are asserted, in JSON, CSV and text.
"""

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterator

from central.backends import open_store
from central.migrate import migrate
from central.queries import day_range
from central.reports import build_report
from central.store import EventRow, Store
from chot.cli import main
from tests.central.test_tracer_auth import credential_for

TZ = "Asia/Ho_Chi_Minh"
DAY1, DAY2 = dt.date(2021, 9, 1), dt.date(2021, 9, 2)
REFUSALS = {"expired": 611, "revoked": 97, "bad_signature": 12, "duplicate_recent": 509}
ACCEPTED = 95_118


def rows(site: str, day: dt.date, verdicts: list[tuple[str, str]], typ: str = "scan"):
    start, end = day_range(day, TZ)
    step = (end - start) // (len(verdicts) + 1)
    for i, (verdict, reason) in enumerate(verdicts):
        t = start + step * (i + 1)
        yield EventRow(
            eid=os.urandom(16),
            typ=typ,
            dev=f"{site.lower()}-lane{i % 4 + 1}",
            site=site,
            lane=f"lane-{i % 4 + 1}",
            seq=i + 1,
            t=t,
            received_at=t + 500,
            gateway=f"{site.lower()}-gw",
            verdict=verdict,
            reason=reason,
            ref=os.urandom(16),
            sub=os.urandom(16),
            kid=None,
            kind="declaration",
            tlv=1,
            clock="synced",
            dec_us=None,
            ver_us=None,
            extra=None,
            raw=b"\xd2",
        )


def seed(store: Store) -> None:
    refused = [("fail", reason) for reason, n in REFUSALS.items() for _ in range(n)]
    day1 = [("pass", "ok")] * 48_000 + refused[:700]
    day2 = [("pass", "ok")] * (ACCEPTED - 48_000) + refused[700:]
    noise = [("pass", "ok")] * 50 + [("fail", "expired")] * 5

    def chunks(events: Iterator[EventRow], size: int = 10_000) -> Iterator[list[EventRow]]:
        batch: list[EventRow] = []
        for row in events:
            batch.append(row)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    for source in (
        rows("HCMC", DAY1, day1),
        rows("HCMC", DAY2, day2),
        rows("HCMC", DAY1 - dt.timedelta(days=1), noise),  # before the period
        rows("HN-01", DAY2, noise),  # another checkpoint
    ):
        for batch in chunks(source):
            store.insert_events(batch)


def test_seed_figures_hcmc_two_days(store):
    seed(store)
    report = build_report(store, DAY1, DAY2, site="HCMC", tz=TZ)
    [hcmc] = report.sites
    assert (hcmc.declarations, hcmc.accepted, hcmc.rejected) == (96_347, 95_118, 1_229)
    assert hcmc.reasons == REFUSALS
    assert hcmc.manual_admitted == hcmc.manual_turned_away == 0
    assert [(d.period, d.declarations) for d in report.days] == [
        ("2021-09-01", 48_700),
        ("2021-09-02", 96_347 - 48_700),
    ]
    assert report.lines()[0].startswith(
        "HCMC, 2021-09-01..2021-09-02: 96,347 declarations, 95,118 accepted, 1,229 rejected"
    )
    # every checkpoint: the other site's 55 counted apart, the day before not at all
    everyone = build_report(store, DAY1, DAY2, tz=TZ)
    assert [(t.site, t.declarations) for t in everyone.sites] == [("HCMC", 96_347), ("HN-01", 55)]
    assert everyone.overall.declarations == 96_402
    # exports
    data = everyone.to_json()
    assert data["sites"][0]["accepted"] == 95_118 and data["overall"]["rejected"] == 1_234
    table = list(csv.DictReader(io.StringIO(everyone.to_csv())))
    period = [r for r in table if r["site"] == "HCMC" and r["period"] == "2021-09-01..2021-09-02"]
    assert [(r["declarations"], r["accepted"], r["rejected"]) for r in period] == [
        ("96347", "95118", "1229")
    ]
    assert "duplicate_recent=509" in period[0]["reasons"]
    one_day = build_report(store, DAY1, site="HCMC", tz=TZ)
    assert one_day.overall.declarations == 48_700 and one_day.period == "2021-09-01"


def test_manual_entries_are_counted_apart(store):
    store.insert_events(list(rows("HCMC", DAY1, [("pass", "ok")] * 3)))
    store.insert_events(
        list(rows("HCMC", DAY1, [("pass", "ok")] * 2 + [("fail", "no_id")], typ="manual"))
    )
    [t] = build_report(store, DAY1, tz=TZ).sites
    assert (t.declarations, t.accepted, t.rejected) == (6, 5, 1)
    assert (t.scans, t.manual_admitted, t.manual_turned_away) == (3, 2, 1)
    assert t.reasons == {"no_id": 1}


def test_cli_report_totals_json_and_csv(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/central.db"
    with open_store(url) as store:
        migrate(store)
        store.insert_events(list(rows("HCMC", DAY1, [("pass", "ok")] * 4 + [("fail", "expired")])))
        store.insert_events(list(rows("HCMC", DAY2, [("pass", "ok")] * 2)))
    config, credential = credential_for(tmp_path, url, "report")
    args = ["central", "report", "--config", str(config), "--credential", str(credential)]
    args += ["--day", "2021-09-01", "--days", "2", "--totals"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[-1]["period"] == "2021-09-01..2021-09-02"
    assert (data[-1]["declarations"], data[-1]["accepted"], data[-1]["rejected"]) == (7, 6, 1)
    assert main([*args, "--csv"]) == 0
    assert "HCMC" in capsys.readouterr().out
