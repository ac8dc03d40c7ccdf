"""A gateway bundle follows the ops home: new devices, revocations and re-signed lists reach the
files a running gateway watches (its registry and documents/ folder)."""

from protocol.registry import Registry
from protocol.trust import open_revocation_list, open_trust_list
from provisioning.home import OpsHome


def test_gateway_bundle_tracks_devices_revocations_and_lists(tmp_path):
    home = OpsHome.init(tmp_path / "ops")
    gateway = home.add_gateway("HN-01", "gw-a", out=tmp_path / "gw")
    registry_file = gateway.folder / "registry.json"
    assert Registry.load(registry_file).key_for("hn01-lane1") is None

    device = home.add_device("HN-01", "hn01-lane1", out=tmp_path / "d1")
    assert Registry.load(registry_file).key_for("hn01-lane1") == device.public_key

    home.revoke_device("hn01-lane1")
    assert Registry.load(registry_file).is_revoked("hn01-lane1")
    documents = gateway.folder / "documents"
    revocations = open_revocation_list(
        (documents / "revocations.cose").read_bytes(), home.root_keyring()
    )
    assert "hn01-lane1" in revocations.devices
    assert revocations.version == home.state.revocation_version

    home.sign_trust_list()
    trust = open_trust_list((documents / "trust.cose").read_bytes(), home.root_keyring())
    assert trust.version == home.state.trust_version == 2
