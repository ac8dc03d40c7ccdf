"""Device and gateway bundles parse with the real device/gateway config loaders; tokens,
operator logins and the CLI for units."""

import json
import stat
import tomllib
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from device.config import ConfigError, load_signing_key
from device.config import load_config as load_device_config
from gateway.config import load_config as load_gateway_config
from gateway.config import read_secret
from gateway.web.auth import load_secret
from protocol.clock import Clock
from protocol.pass_v1 import verify_pass
from protocol.reasons import Verdict
from protocol.registry import Registry
from protocol.trust import open_trust_list, root_keyring
from provisioning.errors import OpsError
from provisioning.home import OpsHome
from tests.provisioning.conftest import NOW, SITE, parse_json


def test_device_bundle_is_what_device_config_reads(home: OpsHome) -> None:
    bundle = home.add_device(SITE, "hn01-lane1", lane="lane-1", broker_host="10.8.0.1")
    home.add_gateway(SITE, "hn01-gw")  # the unit pins its key: rewritten into the bundle
    config = load_device_config(bundle.config_path)
    assert (config.device.id, config.device.site, config.device.lane) == (
        "hn01-lane1",
        SITE,
        "lane-1",
    )
    assert config.mqtt.host == "10.8.0.1" and config.mqtt.username == "hn01-lane1"
    assert config.mqtt.password() == (bundle.folder / "mqtt.password").read_text().strip()
    key = load_signing_key(config.device.signing_key_file)  # also checks mode 0600
    assert bytes(key.verify_key) == bundle.public_key
    assert home.registry().key_for("hn01-lane1") == bundle.public_key
    # the pinned root key opens the shipped trust list, which verifies the home's passes
    trust = open_trust_list(
        config.trust.trust_list_file.read_bytes(), root_keyring(config.trust.root_keys())
    )
    qr, _ = home.issue_pass(kind="declaration", doc_number="42", now=NOW)
    assert verify_pass(qr, trust, Clock.synced(NOW + 1)).verdict is Verdict.PASS
    assert config.trust.revocation_list_file.is_file() and config.mqtt.ca_file.is_file()
    for name in ("device.key", "mqtt.password"):
        assert stat.S_IMODE((bundle.folder / name).stat().st_mode) == 0o600
    # the same section layout as the documented example, key for key
    example = tomllib.loads(Path("device/config.example.toml").read_text())
    ours = tomllib.loads(bundle.config_path.read_text())
    assert set(ours) <= set(example)


def test_device_bundles_pin_the_site_gateways_keys(home: OpsHome) -> None:
    """Issue #13: only acks signed by a pinned gateway key free a unit's outbox. A unit
    added before any gateway refuses to start; adding a gateway rewrites the site's device
    bundles (keeping every other setting), a later device gets every key, a revoked gateway
    is taken out."""
    early = home.add_device(SITE, "hn01-lane1", lane="lane-1", broker_host="10.8.0.1")
    with pytest.raises(ConfigError, match="no gateway key pinned"):
        load_device_config(early.config_path)
    text = early.config_path.read_text().replace('"picamera2"', '"synthetic"')
    early.config_path.write_text(text)  # an operator's edit survives the rewrite
    gw_a = home.add_gateway(SITE, "hn01-gw")
    gw_b = home.add_gateway(SITE, "hn01-gw2")
    other_site = home.add_gateway("HCM-02", "hcm02-gw")
    late = home.add_device(SITE, "hn01-lane2", lane="lane-2")
    expected = {"hn01-gw": gw_a.public_key, "hn01-gw2": gw_b.public_key}
    for bundle in (early, late):
        config = load_device_config(bundle.config_path)
        assert config.trust.gateway_keys() == expected
    assert other_site.public_key not in expected.values()
    early_config = load_device_config(early.config_path)
    assert early_config.camera.source == "synthetic" and early_config.mqtt.host == "10.8.0.1"
    home.revoke_gateway("hn01-gw2")
    for bundle in (early, late):
        assert load_device_config(bundle.config_path).trust.gateway_keys() == {
            "hn01-gw": gw_a.public_key
        }


def test_gateway_bundle_is_what_gateway_config_reads(home: OpsHome) -> None:
    home.add_device(SITE, "hn01-lane1", lane="lane-1")
    home.add_device(SITE, "hn01-lane2", lane="lane-2")
    bundle = home.add_gateway(SITE, "hn01-gw", central_url="http://127.0.0.1:9999")
    config = load_gateway_config(bundle.config_path)
    assert (config.id, config.site, config.mqtt.username) == ("hn01-gw", SITE, "hn01-gw")
    assert config.lanes == {"lane-1": 12, "lane-2": 12}
    assert config.root_keys == [home.root_public_key()]
    assert sorted(p.name for p in config.documents_dir.iterdir()) == [
        "revocations.cose",
        "trust.cose",
    ]
    token = read_secret(config.central.token_file)
    assert token and stat.S_IMODE(config.central.token_file.stat().st_mode) == 0o600
    # the status page's session secret: generated, private, and what the web app loads
    secret_file = config.web.session_secret_file
    assert secret_file is not None and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert load_secret(secret_file) == secret_file.read_bytes().strip()
    assert len(load_secret(secret_file)) == 64
    # only the hash is kept: the central store's registry accepts the token, the files don't
    # hold it in plain text
    central = home.registry()
    assert central.check_token("hn01-gw", token) and not central.check_token("hn01-gw", "x")
    assert token not in (home.path / "registry.json").read_text()
    site_registry = Registry.load(config.registry_file)
    assert set(site_registry.signers) == {"hn01-lane1", "hn01-lane2", "hn01-gw"}
    assert site_registry.tokens == {}
    acl = (home.site_dir(SITE) / "acl").read_text()
    assert "user hn01-gw" in acl and f"topic read chot/v1/{SITE}/dev/+/event" in acl
    # revoking the gateway: token refused, ACL block gone
    home.revoke_gateway("hn01-gw")
    assert not home.registry().check_token("hn01-gw", token)
    assert "user hn01-gw" not in (home.site_dir(SITE) / "acl").read_text()


def test_operator_logins(home: OpsHome, run_cli) -> None:
    home.add_gateway(SITE, "hn01-gw")
    code, out = run_cli(
        "provision",
        "operator",
        "add",
        "--home",
        home.path,
        SITE,
        "alice",
        "--password-stdin",
        "--json",
        stdin="gate-keeper-42\n",
    )
    assert code == 0 and "gate-keeper-42" not in out
    path = Path(parse_json(out)["users_file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = json.loads(path.read_text())["users"]
    assert users["alice"]["hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(users["alice"]["hash"], "gate-keeper-42")
    # the gateway bundle in the home carries the same file
    bundled = home.path / "bundles" / "hn01-gw" / "operators.json"
    assert bundled.read_text() == path.read_text()
    code, _ = run_cli(
        "provision",
        "operator",
        "add",
        "--home",
        home.path,
        SITE,
        "alice",
        "--password-stdin",
        stdin="another-password\n",
    )
    assert code == 1


def test_device_cli_add_list_revoke(home: OpsHome, tmp_path: Path, run_cli) -> None:
    out_dir = tmp_path / "sd-card"
    home.add_gateway(SITE, "hn01-gw")  # a unit pins its site's gateway keys
    code, out = run_cli(
        "provision",
        "device",
        "add",
        "--home",
        home.path,
        SITE,
        "hn01-lane3",
        "--lane",
        "lane-3",
        "--out",
        out_dir,
        "--camera",
        "synthetic",
        "--gpio",
        "simulated",
        "--json",
    )
    assert code == 0
    info = parse_json(out)
    assert info["bundle"] == str(out_dir) and "password" not in out
    assert load_device_config(out_dir / "device.toml").camera.source == "synthetic"
    code, _ = run_cli("provision", "device", "add", "--home", home.path, SITE, "hn01-lane3")
    assert code == 1  # already registered: never a second key for one id
    code, _ = run_cli("provision", "device", "add", "--home", home.path, SITE, "bad id!")
    assert code == 2
    code, out = run_cli(
        "provision", "device", "revoke", "--home", home.path, "hn01-lane3", "--json"
    )
    assert code == 0
    code, out = run_cli("provision", "device", "list", "--home", home.path, "--json")
    assert [unit for unit in parse_json(out) if unit["role"] == "device"] == [
        {
            "id": "hn01-lane3",
            "site": SITE,
            "role": "device",
            "lane": "lane-3",
            "revoked": True,
            "public_key": info["public_key"],
        }
    ]
    assert "hn01-lane3" not in (home.site_dir(SITE) / "passwd").read_text()
    with pytest.raises(OpsError):
        OpsHome(home.path).revoke_device("hn01-lane3")
