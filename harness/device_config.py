"""A scanner unit's files for tests and benchmarks: key, bundled trust list, password file and
`device.toml`, as a provisioned bundle would hold them (the site gateway's key pinned)."""

import os
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from device.config import DeviceConfig, load_config
from harness.config_files import to_toml
from harness.pki import Pki

# The test site's gateway: units pin its key, and only acks it signs free their outbox
# (protocol/ack.py). Generated once per run, never written to the repository.
GATEWAY_ID = "hn01-gw"
GATEWAY_KEY = SigningKey.generate()


def write_device(
    tmp: Path,
    pki: Pki,
    *,
    port: int = 1883,
    password: str | None = None,
    trust: bytes | None = None,
    **sections: dict[str, Any],
) -> DeviceConfig:
    """Key file (0600), bundled trust list, optional password file; returns the config."""
    tmp.mkdir(parents=True, exist_ok=True)
    key_file = tmp / "device.key"
    if not key_file.exists():
        key_file.write_text(os.urandom(32).hex())
        key_file.chmod(0o600)
    (tmp / "trust.cose").write_bytes(trust if trust is not None else pki.trust_list())
    mqtt: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "hn01-lane1",
        "heartbeat_s": 1,
        "reconnect_max_s": 2,
        "ack_timeout_s": 3,
    }
    if password is not None:
        (tmp / "mqtt.password").write_text(password)
        mqtt["password_file"] = "mqtt.password"
    data: dict[str, Any] = {
        "device": {
            "id": "hn01-lane1",
            "site": "HN-01",
            "lane": "lane-1",
            "state_dir": "state",
            "signing_key_file": "device.key",
            "offline_after_s": 1,
        },
        "trust": {
            "root_public_keys": [pki.root_hex],
            "trust_list_file": "trust.cose",
            "gateway_public_keys": {GATEWAY_ID: bytes(GATEWAY_KEY.verify_key).hex()},
        },
        "policy": {"debounce_s": 0.5, "duplicate_window_s": 600},
        "mqtt": mqtt | sections.pop("mqtt", {}),
        "camera": {"source": "keyboard"},
        "decoder": {"name": "zxing"},
        "gpio": {"backend": "simulated"},
    }
    for name, values in sections.items():
        data[name] = data.get(name, {}) | values
    (tmp / "device.toml").write_text(to_toml(data))
    return load_config(tmp / "device.toml")
