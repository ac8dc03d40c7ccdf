"""Tracing for health staff: credentials from `chot provision operator add NAME --role`, checked
by the centre's CLI (store opened directly) and its HTTP API, every query in the access log
with the credential's name and role, times in the site's zone (issue #15)."""

import json
import os
import stat
from pathlib import Path

import pytest

from central import queries
from central.backends import open_store
from central.config import load_config
from central.ingest import ingest_batch
from central.migrate import migrate
from chot.cli import main
from provisioning.home import OpsHome
from provisioning.operators import add_operator
from tests.central.fixtures import MIN, T0, Fleet, sub
from tests.central.server import serve


def credential_for(tmp_path: Path, store_url: str, role: str = "tracer") -> tuple[Path, Path]:
    """(central config naming an operator registry, a credential of `role` in it): what
    the CLI needs to open the store itself."""
    home = tmp_path / f"ops-{role}"
    credential = tmp_path / f"{role}.credential"
    add_operator(home, f"staff-{role}", role, credential)
    config = tmp_path / f"central-{role}.toml"
    config.write_text(
        f'store = "{store_url}"\nregistry = "{tmp_path / "registry.json"}"\n'
        f'operators_file = "{home / "central" / "operators.json"}"\n'
    )
    return config, credential


@pytest.fixture
def centre(tmp_path: Path, fleet: Fleet):
    """An ops home with a tracer and a report-only credential; a centre config naming its
    operator registry; a store with visits in HN-01 (Ho Chi Minh time) and HCM-01 (a site
    mapped to Asia/Tokyo, to see the per-site zone)."""
    home = OpsHome.init(tmp_path / "ops")
    for name, role in (("dr-lan", "tracer"), ("analyst-minh", "report")):
        code = main(
            [
                "provision",
                "operator",
                "add",
                name,
                "--role",
                role,
                "--home",
                str(home.path),
                "--out",
                str(tmp_path / f"{name}.credential"),
                "--json",
            ]
        )
        assert code == 0
    url = f"sqlite:///{tmp_path}/central.db"
    config = tmp_path / "central.toml"
    config.write_text(
        f'store = "{url}"\nregistry = "{fleet.registry_path}"\n'
        f'operators_file = "{home.path / "central" / "operators.json"}"\n'
        '[site_timezones]\n"HCM-01" = "Asia/Tokyo"\n'
    )
    with open_store(url) as store:
        migrate(store)
        items = [fleet.scan("dev-a", T0 + 10 * MIN, 1), fleet.scan("dev-a", T0 + 40 * MIN, 1)]
        ingest_batch(items, fleet.registry.signers["gw-hn"], fleet.registry, store, T0)
        hcm = [fleet.scan("dev-c", T0 + 20 * MIN, 1)]
        ingest_batch(hcm, fleet.registry.signers["gw-hcm"], fleet.registry, store, T0)
    return home, config, url, tmp_path


def visits(config: Path, credential: Path, *extra: str) -> int:
    argv = ["central", "visits", "--config", str(config), "--sub", sub(1).hex()]
    return main([*argv, "--credential", str(credential), *extra])


def access(url: str) -> list[tuple]:
    with open_store(url) as store:
        return [(e["operator"], e["role"], e["via"], e["query"]) for e in queries.access_log(store)]


def test_credential_file_and_registry_hold_what_they_should(centre) -> None:
    home, _, _, tmp = centre
    credential = tmp / "dr-lan.credential"
    assert stat.S_IMODE(os.stat(credential).st_mode) == 0o600
    token = json.loads(credential.read_text())["token"]
    registry = (home.path / "central" / "operators.json").read_text()
    assert token not in registry  # only its hash
    entry = json.loads(registry)["operators"]["dr-lan"]
    assert entry["role"] == "tracer" and entry["roles"] == ["tracing", "report"]


def test_tracer_query_is_logged_with_its_name_and_times_are_local(centre, capsys) -> None:
    _, config, url, tmp = centre
    assert visits(config, tmp / "dr-lan.credential", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["site"], r["t_ms"], r["t_local"]) for r in rows] == [
        ("HN-01", T0 + 10 * MIN, "2021-08-01T07:10:00+07:00"),
        ("HCM-01", T0 + 20 * MIN, "2021-08-01T09:20:00+09:00"),  # the site's own zone
        ("HN-01", T0 + 40 * MIN, "2021-08-01T07:40:00+07:00"),
    ]
    assert access(url) == [("dr-lan", "tracer", "cli", "visits")]
    assert (
        main(
            [
                "central",
                "access-log",
                "--config",
                str(config),
                "--credential",
                str(tmp / "dr-lan.credential"),
                "--json",
            ]
        )
        == 0
    )
    log = json.loads(capsys.readouterr().out)
    assert log[0]["operator"] == "dr-lan" and log[0]["at_local"].endswith("+07:00")


def test_table_prints_iso_times_in_the_site_zone(centre, capsys) -> None:
    _, config, _, tmp = centre
    main(["central", "contacts", "--config", str(config), "--sub", sub(1).hex()])
    assert "--credential" in capsys.readouterr().err  # none given: says what to do
    assert visits(config, tmp / "dr-lan.credential") == 0
    out = capsys.readouterr().out
    assert "2021-08-01T07:10:00+07:00" in out and "2021-08-01T09:20:00+09:00" not in out


def test_unknown_revoked_and_free_text_operators_are_refused(centre, capsys) -> None:
    home, config, url, tmp = centre
    forged = tmp / "forged.credential"
    real = json.loads((tmp / "dr-lan.credential").read_text())
    forged.write_text(json.dumps({**real, "token": "a" * 43}))
    assert visits(config, forged) == 2
    assert "unknown credential" in capsys.readouterr().err
    assert visits(config, tmp / "missing.credential") == 2
    assert "missing.credential" in capsys.readouterr().err
    code = main(
        [
            "central",
            "visits",
            "--config",
            str(config),
            "--sub",
            sub(1).hex(),
            "--operator",
            "dr-lan",
        ]
    )
    assert code == 2 and "--credential" in capsys.readouterr().err
    assert main(["provision", "operator", "revoke", "dr-lan", "--home", str(home.path)]) == 0
    assert visits(config, tmp / "dr-lan.credential") == 2
    assert "revoked" in capsys.readouterr().err
    assert access(url) == []  # nothing refused was answered or logged as answered


def test_report_credential_cannot_trace_but_can_report(centre, capsys) -> None:
    _, config, url, tmp = centre
    analyst = tmp / "analyst-minh.credential"
    assert visits(config, analyst) == 2
    assert "tracer" in capsys.readouterr().err
    argv = ["central", "report", "--config", str(config), "--day", "2021-08-01", "--json"]
    assert main([*argv, "--credential", str(analyst)]) == 0
    assert {r["site"] for r in json.loads(capsys.readouterr().out)} == {"HN-01", "HCM-01"}
    assert access(url) == [("analyst-minh", "report", "cli", "report")]


def test_cli_over_the_centre_api(centre, capsys, monkeypatch) -> None:
    from central.api import create_app

    _, config_path, url, tmp = centre
    config = load_config(config_path)
    with open_store(url) as store, serve(create_app(config, store)) as base:
        monkeypatch.setenv("CHOT_CREDENTIAL", str(tmp / "dr-lan.credential"))
        argv = ["central", "visits", "--central", base, "--sub", sub(1).hex(), "--json"]
        assert main(argv) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows[1]["t_local"] == "2021-08-01T09:20:00+09:00"
        monkeypatch.setenv("CHOT_CREDENTIAL", str(tmp / "analyst-minh.credential"))
        assert main(argv) == 2
        assert "403" in capsys.readouterr().err
        totals = ["central", "report", "--central", base, "--day", "2021-08-01", "--totals"]
        assert main([*totals, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[-1]["declarations"] == 3
    assert access(url) == [
        ("analyst-minh", "report", "api", "report_totals"),
        ("dr-lan", "tracer", "api", "visits"),
    ]
