"""Registry.signer_keys: the one key lookup the gateway and the central store verify with."""

import pytest
from nacl.signing import SigningKey

from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry, Signer


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    for signer_id, site, role in [
        ("hn01-lane1", "HN-01", "device"),
        ("hn01-gw", "HN-01", "gateway"),
        ("sg01-lane1", "SG-01", "device"),
    ]:
        reg.add(Signer(signer_id, site, role, bytes(SigningKey.generate().verify_key)))
    reg.revoke("sg01-lane1")
    return reg


def test_unfiltered_lookup_gives_every_active_signer(registry: Registry) -> None:
    key_for = registry.signer_keys()
    assert key_for("hn01-lane1") == registry.signers["hn01-lane1"].public_key
    assert key_for("hn01-gw") == registry.signers["hn01-gw"].public_key
    assert key_for("nobody") is None


def test_revoked_signer_raises_device_revoked(registry: Registry) -> None:
    with pytest.raises(ProtocolError) as err:
        registry.signer_keys()("sg01-lane1")
    assert err.value.reason is Reason.DEVICE_REVOKED


def test_site_and_role_filters_hide_other_signers(registry: Registry) -> None:
    key_for = registry.signer_keys(site="HN-01", role="device")
    assert key_for("hn01-lane1") is not None
    assert key_for("hn01-gw") is None  # a gateway key cannot sign a device's scan event
    assert key_for("sg01-lane1") is None  # another site's device, even revoked: unknown here
