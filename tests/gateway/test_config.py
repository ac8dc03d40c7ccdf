"""Gateway config: the shipped example is valid, unknown keys and bad values name their key,
relative paths are resolved next to the file, and the CLI reports problems with exit codes."""

import argparse
import json
import shutil
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "config.example.toml"
MINIMAL = {
    "id": "gw-a",
    "site": "HN-01",
    "state_dir": "/tmp/x",
    "signing_key_file": "k",
    "registry_file": "r.json",
    "root_public_keys": ["ab" * 32],
}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_example_config_is_valid_and_paths_resolve_next_to_it(tmp_path):
    path = tmp_path / "gateway.toml"
    shutil.copy(EXAMPLE, path)
    config = load_config(path)
    assert config.site == "HN-01" and config.lanes == {"lane-1": 12, "lane-2": 12}
    assert config.signing_key_file == tmp_path / "gateway.key"
    assert config.mqtt.password_file == tmp_path / "mqtt.password"
    assert config.web.users_file == tmp_path / "operators.json"
    assert config.state_dir == Path("/var/lib/chot-gateway")
    assert config.client_id == "chot-gw-gw-HN-01-a" and config.central.batch_size == 500


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"mqtt": {"prot": 1883}}, "mqtt.prot"),
        ({"mqtt": {"port": 70000}}, "mqtt.port"),
        ({"central": {"batch_size": 6000}}, "central.batch_size"),
        ({"store": {"retention_days": 0}}, "store.retention_days"),
        ({"web": {"port": "x"}}, "web.port"),
        ({"site": "bad site"}, "site"),
        ({"root_public_keys": ["abcd"]}, "root_public_keys.0"),  # the bad list item
        ({"colour": "red"}, "colour"),
    ],
)
def test_errors_name_the_key(change, key):
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, **change})
    assert f"{key}:" in str(err.value)


def test_missing_required_key_is_named():
    data = dict(MINIMAL)
    del data["registry_file"]
    with pytest.raises(ConfigError, match="registry_file: Field required"):
        parse_config(data)


def test_cli_check_config(tmp_path, capsys):
    good = tmp_path / "good.toml"
    shutil.copy(EXAMPLE, good)
    assert run_cli(["gateway", "check-config", "--config", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "id": "gw-HN-01-a", "site": "HN-01"}
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("[store]", "[store]\nmax_bites = 1"))
    assert run_cli(["gateway", "check-config", "--config", str(bad)]) == 1
    assert "store.max_bites" in capsys.readouterr().err


def test_a_relative_state_dir_lies_inside_systemds_state_directory(tmp_path, monkeypatch):
    """A bundle's `state_dir = "state"` must not land in /etc/chot (read-only under
    ProtectSystem=strict): under systemd it lies inside $STATE_DIRECTORY."""
    path = tmp_path / "gateway.toml"
    text = EXAMPLE.read_text().replace('state_dir = "/var/lib/chot-gateway"', 'state_dir = "state"')
    assert 'state_dir = "state"' in text
    path.write_text(text)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert load_config(path).state_dir == tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var"))
    assert load_config(path).state_dir == tmp_path / "var" / "state"
    shutil.copy(EXAMPLE, path)  # an absolute one is kept as written
    assert load_config(path).state_dir == Path("/var/lib/chot-gateway")
