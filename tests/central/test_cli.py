"""`chot central ...` through argparse, against both backends."""

import argparse
import csv
import io
import json
import re

import pytest

from central import queries
from central.cli import add_commands, parse_time
from central.ingest import ingest_batch
from central.store import Store
from common.cli import UsageError
from tests.central.fixtures import DAY, MIN, T0, Fleet, sub
from tests.central.test_tracer_auth import credential_for


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chot")
    add_commands(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def filled(fleet: Fleet, store: Store) -> Store:
    items = [fleet.scan("dev-a", T0 + i * 10 * MIN, i % 3) for i in range(6)]
    items.append(fleet.scan("dev-b", T0, 7, verdict="fail", reason="revoked"))
    ingest_batch(items, fleet.registry.signers["gw-hn"], fleet.registry, store, T0)
    return store


def test_migrate_and_stats_json(filled: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["central", "migrate", "--store", filled.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"applied": []}
    assert run(["central", "stats", "--store", filled.url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["events_central"] == 7 and stats["by_verdict"] == {"pass": 6, "fail": 1}


def test_visits_needs_an_operator_and_is_logged(
    filled: Store, capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("CHOT_CREDENTIAL", raising=False)
    with pytest.raises(UsageError, match="--credential"):
        run(["central", "visits", "--store", filled.url, "--sub", sub(1).hex()])
    assert queries.access_log(filled) == []
    config, credential = credential_for(tmp_path, filled.url)
    code = run(
        [
            "central",
            "visits",
            "--config",
            str(config),
            "--sub",
            sub(1).hex(),
            "--from",
            "2021-08-01",
            "--to",
            "2021-08-02",
            "--credential",
            str(credential),
            "--json",
        ]
    )
    assert code == 0
    visits = json.loads(capsys.readouterr().out)
    assert [v["t_ms"] for v in visits] == [T0 + 10 * MIN, T0 + 40 * MIN]
    assert queries.access_log(filled)[0]["operator"] == "staff-tracer"
    with pytest.raises(UsageError):
        run(["central", "visits", "--config", str(config), "--sub", "zz"])


def test_contacts_csv_and_report_table(
    filled: Store, capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch
) -> None:
    config, credential = credential_for(tmp_path, filled.url)
    monkeypatch.setenv("CHOT_CREDENTIAL", str(credential))
    code = run(
        [
            "central",
            "contacts",
            "--config",
            str(config),
            "--sub",
            sub(7).hex(),
            "--window-min",
            "15",
            "--csv",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["sub"], r["min_gap_ms"]) for r in rows] == [
        (sub(0).hex(), "0"),
        (sub(1).hex(), str(10 * MIN)),
    ]


def test_report_table_in_the_command_lines_language(
    filled: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Headings and reasons in words (CHOT_LANG); the data itself as it is."""
    config, credential = credential_for(tmp_path, filled.url, "report")
    monkeypatch.setenv("CHOT_CREDENTIAL", str(credential))
    monkeypatch.setenv("CHOT_LANG", "en")
    assert run(["central", "report", "--config", str(config), "--day", "2021-08-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", out[0])[:8] == [
        "Site",
        "Day",
        "Lane",
        "Total",
        "Passed",
        "Refused",
        "Checked by hand",
        "Refusal reasons",
    ]
    assert out[2].split()[:7] == ["HN-01", "2021-08-01", "lane-2", "1", "0", "1", "0"]
    assert "Revoked: 1" in out[2] and "revoked=1" not in out[2]
    monkeypatch.setenv("CHOT_LANG", "vi")
    assert run(["central", "report", "--config", str(config), "--day", "2021-08-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Điểm chốt") and "Lý do từ chối" in out[0]
    assert "Đã bị thu hồi: 1" in out[2]


def test_retention_command(filled: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["central", "retention", "--store", filled.url, "--days", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # 2021 is long past: all of it goes
    assert result == {"days": ["2021-08-01"], "events": 7}
    assert queries.stats(filled)["events_central"] == 0


def test_parse_time() -> None:
    assert parse_time("2021-08-01T07:00") == T0  # local time in Ho Chi Minh City
    assert parse_time("2021-08-01T00:00+00:00") == T0
    assert parse_time(str(T0 // 1000)) == T0
    assert parse_time("2021-08-02") - parse_time("2021-08-01") == DAY
    with pytest.raises(UsageError):
        parse_time("yesterday")
