"""config.py: the shipped example parses; unknown keys and bad values are named."""

import tomllib
from pathlib import Path

import pytest

from device.config import ConfigError, load_config, load_signing_key, parse_config

EXAMPLE = Path(__file__).parents[2] / "device" / "config.example.toml"


def example() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def test_example_parses_and_paths_are_relative_to_the_file():
    config = load_config(EXAMPLE)
    assert config.device.id == "hn01-lane1" and config.decoder.name == "zxing"
    assert config.device.state_dir == EXAMPLE.parent / "state"
    assert config.mqtt.ca_file == EXAMPLE.parent / "ca.crt"
    assert config.gpio.pins["buzzer"] == 18 and config.outbox.max_events == 100_000


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("mqtt", "hots", "x"), ("device", "colour", 1), ("policy", "debounce", 3)],
)
def test_unknown_key_is_rejected_with_its_name(section, key, value):
    data = example()
    data[section][key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: Extra inputs"):
        parse_config(data, Path("/etc/chot"))


def test_bad_values_are_named():
    data = example()
    data["device"]["id"] = "bad id/with slash"
    data["trust"]["root_public_keys"] = ["abcd"]
    data["policy"]["allowed_kinds"] = ["passport"]
    with pytest.raises(ConfigError) as info:
        parse_config(data, Path("/etc/chot"))
    text = str(info.value)
    assert "device.id" in text and "trust.root_public_keys" in text
    assert "policy.allowed_kinds.0" in text


def test_unknown_top_level_section_and_bad_toml(tmp_path):
    data = example()
    data["camara"] = {"source": "opencv"}
    with pytest.raises(ConfigError, match="camara"):
        parse_config(data, tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\nid = 1")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_config(broken)


def test_password_from_env_or_file(tmp_path, monkeypatch):
    (tmp_path / "mqtt.password").write_text("s3cret\n")
    config = parse_config(example(), tmp_path)
    monkeypatch.delenv("CHOT_MQTT_PASSWORD", raising=False)
    assert config.mqtt.password() == "s3cret"
    monkeypatch.setenv("CHOT_MQTT_PASSWORD", "from-env")
    assert config.mqtt.password() == "from-env"


def test_signing_key_must_be_private_and_hex(tmp_path):
    key = tmp_path / "device.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_signing_key(key)
    key.chmod(0o600)
    assert len(bytes(load_signing_key(key).verify_key)) == 32
    key.write_text("not hex")
    with pytest.raises(ConfigError, match="64 hex"):
        load_signing_key(key)


def test_signed_config_document_changes_policy_and_persists(tmp_path, monkeypatch):
    from device.app import DeviceApp
    from device.gpio import SimulatedBackend
    from protocol.documents import sign_document
    from tests.support.device_pipeline import Pki, write_device

    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    pki = Pki()
    config = write_device(tmp_path, pki)

    def doc(device: str, version: int) -> bytes:
        body = {"device": device, "policy": {"allowed_kinds": ["vaccination"], "debounce_s": 1}}
        return sign_document("chot-config", version, pki.now - 10, pki.now + 86400, body, pki.root)

    app = DeviceApp(config, backend=SimulatedBackend(), connect=False)
    try:
        assert app.handle_text(pki.make_pass(1)).reason.value == "ok"
        app.on_document("config", doc("hn02-lane9", 1))  # another unit's config
        assert app.refused["config"] == "wrong_type"
        app.on_document("config", doc("hn01-lane1", 2))
        assert app.decider.policy.allowed_kinds == {"vaccination"}
        assert app.handle_text(pki.make_pass(2)).reason.value == "kind_not_allowed"
        app.on_document("config", doc("hn01-lane1", 1))
        assert app.refused["config"] == "rollback"
    finally:
        app.close()
    app = DeviceApp(config, backend=SimulatedBackend(), connect=False)  # restart: still applied
    try:
        assert app.decider.policy.allowed_kinds == {"vaccination"}
        assert app.decider.policy.debounce_s == 1
    finally:
        app.close()
