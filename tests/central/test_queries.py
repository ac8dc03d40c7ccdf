"""Each query against a hand-checked fixture, on SQLite and PostgreSQL.

Times: T0 = 2021-08-01 00:00 UTC = 07:00 in Ho Chi Minh City, so the local day 2021-08-01
is [T0 - 7 h, T0 + 17 h).
"""

import datetime as dt
import json

import pytest
from fastapi.testclient import TestClient

from central import queries
from central.api import create_app
from central.ingest import ingest_batch
from central.store import Store
from tests.central.fixtures import DAY, HOUR, MIN, T0, Fleet, operator_headers, sub


@pytest.fixture
def filled(fleet: Fleet, store: Store) -> Store:
    hn = [
        fleet.scan("dev-a", T0 + 10 * MIN, 1),  # index case, first visit
        fleet.scan("dev-b", T0 + 5 * HOUR, 1, verdict="fail", reason="expired"),
        fleet.scan("dev-b", T0 + 25 * MIN, 2, seq=4),  # 15 min after sub 1; dev-b skips 2, 3
        fleet.scan("dev-a", T0 + 50 * MIN, 3),  # 40 min after sub 1
        fleet.scan(
            "dev-a",
            T0 + 5 * HOUR + 20 * MIN,
            4,
            verdict="warn",
            reason="clock_untrusted",
            clock="unknown",
        ),  # 20 min after sub 1's 2nd visit
        fleet.scan("dev-a", T0 + DAY + HOUR, 1),  # next local day
        fleet.scan("dev-a", T0 - 8 * HOUR, 6),  # 23:00 local on 2021-07-31
        fleet.sign(fleet.event("gw-hn", T0 + HOUR, extra={"lanes": {"lane-1": 40}})),
        fleet.sign(
            fleet.event("gw-hn", T0 + 2 * HOUR, extra={"lanes": {"lane-1": 55, "lane-2": 10}})
        ),
    ]
    hcm = [
        fleet.scan("dev-c", T0 + 10 * MIN, 5),  # same time as sub 1, other site
        fleet.sign(fleet.event("gw-hcm", T0 + HOUR, extra={"lanes": {"lane-1": 5}})),
    ]
    for gateway, items in (("gw-hn", hn), ("gw-hcm", hcm)):
        result = ingest_batch(items, fleet.registry.signers[gateway], fleet.registry, store, T0)
        assert result.rejected == [] and len(result.stored) == len(items)
    return store


def test_visits_of_one_subject_in_a_range(filled: Store) -> None:
    day = queries.visits(filled, sub(1), T0, T0 + DAY, operator="dr-lan")
    assert [(v["t"], v["dev"], v["verdict"]) for v in day] == [
        (T0 + 10 * MIN, "dev-a", "pass"),
        (T0 + 5 * HOUR, "dev-b", "fail"),
    ]
    assert day[0]["ref"] == (1001).to_bytes(16, "big").hex() and day[0]["site"] == "HN-01"
    assert len(queries.visits(filled, sub(1), 0, 2**62, operator="dr-lan")) == 3
    assert queries.visits(filled, sub(99), 0, 2**62, operator="dr-lan") == []


def test_contacts_within_the_window_at_the_same_site(filled: Store) -> None:
    found = queries.contacts(filled, sub(1), 30, T0, T0 + DAY, operator="dr-lan")
    assert [(c["sub"], c["site"], c["min_gap_ms"]) for c in found] == [
        (sub(2).hex(), "HN-01", 15 * MIN),
        (sub(4).hex(), "HN-01", 20 * MIN),
    ]
    wider = queries.contacts(filled, sub(1), 60, T0, T0 + DAY, operator="dr-lan")
    assert {c["sub"] for c in wider} == {sub(2).hex(), sub(3).hex(), sub(4).hex()}


def test_tracing_is_audited_and_needs_an_operator(filled: Store) -> None:
    queries.visits(filled, sub(1), T0, T0 + DAY, operator="dr-lan")
    queries.contacts(filled, sub(1), 30, T0, T0 + DAY, operator="dr-minh", via="api")
    log = queries.access_log(filled)
    assert [(e["operator"], e["via"], e["query"], e["row_count"]) for e in log] == [
        ("dr-minh", "api", "contacts", 2),
        ("dr-lan", "cli", "visits", 2),
    ]
    assert json.loads(log[0]["params"]) == {
        "sub": sub(1).hex(),
        "window_min": 30,
        "from": T0,
        "to": T0 + DAY,
    }
    with pytest.raises(PermissionError):
        queries.visits(filled, sub(1), T0, T0 + DAY, operator=" ")
    assert len(queries.access_log(filled)) == 2


NO_MANUAL = {"admitted": 0, "turned_away": 0, "by_category": {}}


def test_report_counts_manual_entries_apart_from_camera_scans(fleet: Fleet, filled: Store) -> None:
    """Staff-typed entries (signed by the gateway) are people at the checkpoint too, but the
    report says how many were admitted or turned away by hand, and in which category."""
    manual = [
        ("pass", "ok", "paper_declaration"),
        ("pass", "ok", "paper_declaration"),
        ("pass", "ok", "exempt"),
        ("fail", "no_declaration", "other"),
        ("fail", "symptoms", "paper_declaration"),
    ]
    items = [
        fleet.sign(
            fleet.event(
                "gw-hn",
                T0 + 3 * HOUR + i * MIN,
                typ="manual",
                lane="lane-1",
                verdict=verdict,
                reason=reason,
                extra={"category": category, "operator": "lan", "outcome": verdict},
            )
        )
        for i, (verdict, reason, category) in enumerate(manual)
    ]
    result = ingest_batch(items, fleet.registry.signers["gw-hn"], fleet.registry, filled, T0)
    assert result.rejected == [] and len(result.stored) == len(items)
    rows = {r["lane"]: r for r in queries.report(filled, dt.date(2021, 8, 1), site="HN-01")}
    lane = rows["lane-1"]
    assert lane["scans"] == {"pass": 2, "fail": 0, "warn": 1}  # the camera's, unchanged
    assert lane["manual"] == {
        "admitted": 3,
        "turned_away": 2,
        "by_category": {
            "paper_declaration": {"admitted": 2, "turned_away": 1},
            "exempt": {"admitted": 1, "turned_away": 0},
            "other": {"admitted": 0, "turned_away": 1},
        },
    }
    assert (lane["total"], lane["pass"], lane["fail"]) == (3 + 5, 2 + 3, 0 + 2)
    assert lane["fail_reasons"] == {"no_declaration": 1, "symptoms": 1}
    assert rows["lane-2"]["manual"] == NO_MANUAL


def test_report_counts_per_site_local_day_and_lane(filled: Store) -> None:
    rows = queries.report(filled, dt.date(2021, 8, 1))
    assert rows == [
        {
            "site": "HCM-01",
            "day": "2021-08-01",
            "lane": "lane-1",
            "total": 1,
            "pass": 1,
            "fail": 0,
            "warn": 0,
            "fail_reasons": {},
            "scans": {"pass": 1, "fail": 0, "warn": 0},
            "manual": NO_MANUAL,
        },
        {
            "site": "HN-01",
            "day": "2021-08-01",
            "lane": "lane-1",
            "total": 3,
            "pass": 2,
            "fail": 0,
            "warn": 1,
            "fail_reasons": {},
            "scans": {"pass": 2, "fail": 0, "warn": 1},
            "manual": NO_MANUAL,
        },
        {
            "site": "HN-01",
            "day": "2021-08-01",
            "lane": "lane-2",
            "total": 2,
            "pass": 1,
            "fail": 1,
            "warn": 0,
            "fail_reasons": {"expired": 1},
            "scans": {"pass": 1, "fail": 1, "warn": 0},
            "manual": NO_MANUAL,
        },
    ]
    assert len(queries.report(filled, dt.date(2021, 8, 1), site="HN-01")) == 2
    two_days = queries.report(filled, dt.date(2021, 7, 31), site="HN-01", days=3)
    assert [(r["day"], r["lane"], r["total"]) for r in two_days] == [
        ("2021-07-31", "lane-1", 1),
        ("2021-08-01", "lane-1", 3),
        ("2021-08-01", "lane-2", 2),
        ("2021-08-02", "lane-1", 1),
    ]


def test_health_per_device_and_hour(filled: Store) -> None:
    rows = queries.health(filled, T0, T0 + 6 * HOUR)
    summary = {
        (r["dev"], r["hour"]): (
            r["events"],
            r["pass"],
            r["fail"],
            r["warn"],
            r["load"],
            r["clock_synced"],
            r["clock_unknown"],
        )
        for r in rows
    }
    assert summary == {
        ("dev-a", "2021-08-01T00:00Z"): (2, 2, 0, 0, 0, 2, 0),
        ("dev-a", "2021-08-01T05:00Z"): (1, 0, 0, 1, 0, 0, 1),
        ("dev-b", "2021-08-01T00:00Z"): (1, 1, 0, 0, 0, 1, 0),
        ("dev-b", "2021-08-01T05:00Z"): (1, 0, 1, 0, 0, 1, 0),
        ("dev-c", "2021-08-01T00:00Z"): (1, 1, 0, 0, 0, 1, 0),
        ("gw-hcm", "2021-08-01T01:00Z"): (1, 0, 0, 0, 1, 1, 0),
        ("gw-hn", "2021-08-01T01:00Z"): (1, 0, 0, 0, 1, 1, 0),
        ("gw-hn", "2021-08-01T02:00Z"): (1, 0, 0, 0, 1, 1, 0),
    }


def test_load_is_the_latest_summary_per_gateway(filled: Store) -> None:
    rows = queries.load(filled)
    assert [(r["site"], r["gateway"], r["t"], r["extra"]) for r in rows] == [
        ("HCM-01", "gw-hcm", T0 + HOUR, {"lanes": {"lane-1": 5}}),
        ("HN-01", "gw-hn", T0 + 2 * HOUR, {"lanes": {"lane-1": 55, "lane-2": 10}}),
    ]
    assert [r["gateway"] for r in queries.load(filled, site="HN-01")] == ["gw-hn"]


def test_stats(filled: Store) -> None:
    stats = queries.stats(filled)
    assert stats["events_central"] == 11 and stats["duplicates"] == 0
    assert stats["by_verdict"] == {"pass": 6, "fail": 1, "warn": 1, "none": 3}
    dev_a, dev_b = stats["by_device"]["dev-a"], stats["by_device"]["dev-b"]
    assert dev_a == {
        "count": 5,
        "min_seq": 1,
        "max_seq": 5,
        "missing": 0,
        "epochs": {0: {"count": 5, "min_seq": 1, "max_seq": 5, "missing": 0}},
    }
    assert (dev_b["count"], dev_b["min_seq"], dev_b["max_seq"], dev_b["missing"]) == (2, 1, 4, 2)


def test_api_read_endpoints_need_roles_and_tracing_is_logged(filled: Store, fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.config(filled.url), filled))
    params = {"sub": sub(1).hex(), "from_ms": T0, "to_ms": T0 + DAY}
    assert client.get("/api/v1/visits", params=params).status_code == 401
    analyst = operator_headers("analyst")
    assert client.get("/api/v1/visits", params=params, headers=analyst).status_code == 403
    assert client.get("/api/v1/contacts", params=params, headers=analyst).status_code == 403
    assert client.get("/api/v1/stats", headers=analyst).json()["events_central"] == 11
    report = client.get("/api/v1/report", params={"day": "2021-08-01"}, headers=analyst)
    assert len(report.json()) == 3
    tracer = operator_headers("tracer")
    assert len(client.get("/api/v1/visits", params=params, headers=tracer).json()) == 2
    assert len(client.get("/api/v1/contacts", params=params, headers=tracer).json()) == 2
    log = queries.access_log(filled)  # every query, with the credential's name and role
    assert [(e["operator"], e["role"], e["via"], e["query"]) for e in log] == [
        ("tracer", "report+tracing", "api", "contacts"),
        ("tracer", "report+tracing", "api", "visits"),
        ("analyst", "report", "api", "report"),
        ("analyst", "report", "api", "stats"),
    ]
