"""The site's time: chrony for the gateway, a timesyncd drop-in for each unit (issue #14).

Generated through the CLI as an operator would, then parsed: chrony's directives one per line,
timesyncd's drop-in as the ini file systemd reads.
"""

import configparser
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioning import ntp
from provisioning.errors import OpsError
from provisioning.home import OpsHome
from tests.provisioning.conftest import SITE


def directives(text: str) -> list[list[str]]:
    """chrony.conf: one directive and its arguments per line, '#' comments."""
    return [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]


def add_gateway(
    home: OpsHome, run_cli: Callable[..., tuple[int, str]], out: Path, *flags: str
) -> tuple[int, str]:
    """`chot provision gateway add` of hn01-gw into `out` with `flags`: (exit code, output)."""
    return run_cli(
        "provision", "gateway", "add", "--home", home.path, SITE, "hn01-gw", "--out", out, *flags
    )


def test_gateway_bundle_serves_the_site_and_keeps_time_offline(home, run_cli, tmp_path):
    out = tmp_path / "gw"
    code, text = add_gateway(
        home,
        run_cli,
        out,
        "--ntp-allow",
        "192.168.10.0/24",
        "--ntp-allow",
        "10.20.0.7/16",
        "--json",
    )
    assert code == 0, text
    path = out / "chrony.conf.d" / "chot.conf"
    assert json.loads(text)["chrony"] == str(path)
    conf = directives(path.read_text())
    assert ["pool", "2.debian.pool.ntp.org", "iburst"] in conf
    assert [d[1] for d in conf if d[0] == "allow"] == ["192.168.10.0/24", "10.20.0.0/16"]
    assert ["local", "stratum", "10", "orphan"] in conf
    assert not [d for d in conf if d[0] == "refclock"]  # no GPS unless asked
    known = {"pool", "allow", "local", "refclock"}
    assert {d[0] for d in conf} <= known


def test_gps_and_pps_refclocks_behind_flags(home, run_cli, tmp_path):
    out = tmp_path / "gw"
    code, text = add_gateway(home, run_cli, out, "--gps", "--pps", "/dev/pps0")
    assert code == 0, text
    conf = directives((out / "chrony.conf.d" / "chot.conf").read_text())
    refclocks = [d[1:] for d in conf if d[0] == "refclock"]
    assert refclocks[0][:4] == ["SHM", "0", "refid", "GPS"]
    assert refclocks[1][:2] == ["PPS", "/dev/pps0"] and "lock" in refclocks[1]
    assert [d[1] for d in conf if d[0] == "allow"] == list(ntp.PRIVATE_SUBNETS)


def test_a_bad_subnet_registers_no_gateway(home, run_cli, tmp_path):
    code, _ = add_gateway(home, run_cli, tmp_path / "gw", "--ntp-allow", "192.168.300.0/24")
    assert code != 0
    assert not (tmp_path / "gw").exists()
    assert "hn01-gw" not in home.registry().signers


@pytest.mark.parametrize(
    "kwargs",
    [{"pps_device": "/dev/pps0"}, {"gps": True, "pps_device": "pps0"}, {"pools": ["a b"]}],
)
def test_chrony_options_refused(kwargs):
    with pytest.raises(OpsError):
        ntp.gateway_chrony_conf(**kwargs)


def test_device_bundle_takes_time_from_its_gateway_only(home, run_cli, tmp_path):
    out = tmp_path / "unit"
    code, text = run_cli(
        "provision",
        "device",
        "add",
        "--home",
        home.path,
        SITE,
        "hn01-lane1",
        "--out",
        out,
        "--broker-host",
        "gw.hn01.example",
        "--json",
    )
    assert code == 0, text
    path = out / "timesyncd.conf.d" / "chot.conf"
    assert json.loads(text)["timesyncd"] == str(path)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    assert parser.sections() == ["Time"]
    assert dict(parser["Time"]) == {"NTP": "gw.hn01.example", "FallbackNTP": ""}


def test_host_names_are_checked():
    with pytest.raises(OpsError):
        ntp.device_timesyncd_conf("gw\nFallbackNTP=evil.example")
