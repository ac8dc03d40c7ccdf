"""One recent-pass window per site (issue #15): the units' `[policy] duplicate_window_s` and the
gateway's are written from the same value in the ops home, at `gateway add` / `device add`, by
`chot provision site policy`, and whenever the bundles are refreshed; each file read by the
module that reads it on the unit or the gateway."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from device.config import load_config as load_device_config
from gateway.config import load_config as load_gateway_config
from provisioning import toml_out
from provisioning.home import OpsHome
from tests.provisioning.conftest import SITE, parse_json

ROOT = Path(__file__).resolve().parents[2]


def windows(home: OpsHome, site: str = SITE) -> dict[str, float]:
    """unit id -> the window its bundle config gives it, as the unit or gateway reads it."""
    record = home.state.sites[site]
    found = {
        unit: load_device_config(Path(folder) / "device.toml").policy.duplicate_window_s
        for unit, folder in record.device_bundles.items()
    }
    for unit, folder in record.gateway_bundles.items():
        if unit not in record.gateways:  # revoked: its bundle is left as it was
            continue
        config = load_gateway_config(Path(folder) / "gateway.toml")
        found[unit] = config.policy.duplicate_window_s
    return found


def test_new_bundles_carry_the_sites_default(home: OpsHome, tmp_path: Path) -> None:
    home.add_device(SITE, "hn01-lane1", out=tmp_path / "d1")
    home.add_gateway(SITE, "hn01-gw", out=tmp_path / "gw")
    assert windows(home) == {"hn01-lane1": 1800, "hn01-gw": 1800}


def test_a_change_reaches_every_bundle_of_the_site(home: OpsHome, tmp_path: Path, run_cli) -> None:
    home.add_device(SITE, "hn01-lane1", out=tmp_path / "d1")
    home.add_gateway(SITE, "hn01-gw", out=tmp_path / "gw")
    home.add_device(SITE, "hn01-lane2", lane="lane-2", out=tmp_path / "d2")
    home.add_device("HCM-01", "hcm-lane1", out=tmp_path / "other")
    home.add_gateway("HCM-01", "hcm-gw", out=tmp_path / "other-gw")
    gateway_toml = (tmp_path / "gw" / "gateway.toml").read_text()

    args = ("provision", "site", "policy", SITE, "--home", home.path)
    code, out = run_cli(*args, "--duplicate-window-s", "900", "--json")
    assert code == 0, out
    shown = parse_json(out)
    assert (shown["site"], shown["duplicate_window_s"]) == (SITE, 900)
    assert len(shown["rewritten"]) == 3  # two units and the gateway
    home = OpsHome(home.path)
    assert home.state.sites[SITE].duplicate_window_s == 900
    assert windows(home) == {"hn01-lane1": 900, "hn01-lane2": 900, "hn01-gw": 900}
    assert windows(home, "HCM-01") == {"hcm-lane1": 1800, "hcm-gw": 1800}  # not its site
    # the rest of the gateway's config is kept, key for key
    before = tomllib.loads(gateway_toml)
    after = tomllib.loads((tmp_path / "gw" / "gateway.toml").read_text())
    assert after == {**before, "policy": {"duplicate_window_s": 900}}

    # the same value again: nothing rewritten
    code, out = run_cli(*args, "--duplicate-window-s", "900", "--json")
    assert parse_json(out)["rewritten"] == []
    # bundles made or refreshed later follow the site's value too
    home.add_device(SITE, "hn01-lane3", lane="lane-3", out=tmp_path / "d3")
    home.add_gateway(SITE, "hn01-gw2", out=tmp_path / "gw2")
    assert set(windows(home).values()) == {900}
    # a bundle edited by hand is brought back when the bundles are refreshed (a revocation)
    toml_out.edit(tmp_path / "gw" / "gateway.toml", policy={"duplicate_window_s": 60})
    toml_out.edit(tmp_path / "d1" / "device.toml", policy={"duplicate_window_s": 60})
    home.revoke_device("hn01-gw2")  # refreshes the gateway and device bundles
    assert windows(home) == {f"hn01-lane{n}": 900 for n in (1, 2, 3)} | {"hn01-gw": 900}


def test_the_command_in_vietnamese_and_its_refusals(tmp_path: Path) -> None:
    home = OpsHome.init(tmp_path / "ops")
    home.add_gateway(SITE, "hn01-gw", out=tmp_path / "gw")

    def chot(lang: str, *argv: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "chot", "provision", "site", "policy", "--home", home.path]
            + [str(a) for a in argv],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "CHOT_LANG": lang},
            capture_output=True,
            text=True,
            timeout=60,
        )

    changed = chot("vi", SITE, "--duplicate-window-s", 600)
    assert changed.returncode == 0, changed.stderr
    lines = changed.stdout.splitlines()
    assert (
        lines[0] == f"Điểm chốt {SITE}: thẻ đã cho qua bị coi là lặp lại ở mọi làn trong 600 giây"
    )
    assert lines[1] == "Số tệp cấu hình đã ghi lại: 1"
    assert lines[-1].startswith("Bước tiếp theo: chép device.toml và gateway.toml mới")
    shown = chot("en", SITE)
    assert shown.stdout.splitlines() == [
        f"Site {SITE}: a pass let through counts as a repeat at every lane for 600 s",
        "Bundle configs rewritten: 0",
    ]
    too_long = chot("en", SITE, "--duplicate-window-s", 8 * 24 * 3600)
    assert too_long.returncode == 1 and "0 to 604800 s" in too_long.stderr
    unknown = chot("vi", "HCM-01")
    assert unknown.returncode == 1 and unknown.stderr.startswith("chot: bị từ chối: no site")
    data = json.loads(chot("vi", SITE, "--json").stdout)
    assert data == {"site": SITE, "duplicate_window_s": 600, "rewritten": []}
