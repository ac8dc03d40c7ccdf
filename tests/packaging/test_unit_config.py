"""The scanner config under systemd: $STATE_DIRECTORY for state, credentials by name."""

from pathlib import Path

import pytest

from device.config import load_config

ROOT_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def _config(folder: Path, device_extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "device.toml"
    path.write_text(
        f'[device]\nid = "u1"\nsite = "S1"\nsigning_key_file = "device.key"\n{device_extra}\n'
        f'[trust]\nroot_public_keys = ["{ROOT_KEY}"]\n'
        f'gateway_public_keys = {{ "gw1" = "{ROOT_KEY}" }}\n'
        '[mqtt]\npassword_file = "mqtt.password"\n[camera]\nsource = "files"\n'
    )
    return path


def test_state_dir_is_the_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var"))
    assert load_config(_config(tmp_path / "etc")).device.state_dir == tmp_path / "var"
    relative = load_config(_config(tmp_path / "etc", 'state_dir = "state"'))
    assert relative.device.state_dir == tmp_path / "var" / "state"


def test_without_systemd_state_sits_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = load_config(_config(tmp_path / "etc"))
    assert config.device.state_dir == tmp_path / "etc" / "state"


def test_credentials_are_found_by_name_and_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "device.key").write_text("ab" * 32)
    (creds / "mqtt.password").write_text("from-credential\n")
    etc = tmp_path / "etc"
    _config(etc)
    (etc / "mqtt.password").write_text("stale-file\n")  # root-only on a unit
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.delenv("CHOT_MQTT_PASSWORD", raising=False)
    config = load_config(etc / "device.toml")
    assert config.device.signing_key_file == creds / "device.key"
    assert config.mqtt.password() == "from-credential"
