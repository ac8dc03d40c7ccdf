"""Events, topics, ids and the registry: the contracts between device, gateway and central."""

import json

import pytest
from nacl.signing import SigningKey

from protocol import cbor, cose, topics
from protocol.events import Event, new_event_id, open_event, sign_event
from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry, Signer
from protocol.trust import open_revocation_list, sign_revocation_list
from tests.protocol.conftest import NOW, make_pki


def make_event(dev="lane1-a", seq=1, **changes) -> Event:
    fields = dict(
        eid=new_event_id(),
        typ="scan",
        dev=dev,
        site="HN-01",
        seq=seq,
        t_ms=NOW * 1000,
        clock="synced",
        verdict="pass",
        reason="ok",
        lane="lane-1",
        ref=bytes(16),
        sub=bytes(16),
        kid=bytes(8),
        kind="declaration",
        tlv=3,
        dec_us=400,
        ver_us=90,
    )
    fields.update(changes)
    return Event(**fields)


def test_event_round_trip_and_signer_check():
    a, b = SigningKey.generate(), SigningKey.generate()
    keys = {"lane1-a": bytes(a.verify_key), "lane1-b": bytes(b.verify_key)}
    event = make_event()
    verified = open_event(sign_event(event, a), keys.get)
    assert verified.event == event
    # a valid device key signing in another device's name is refused
    with pytest.raises(ProtocolError) as err:
        open_event(sign_event(make_event(dev="lane1-b"), a), keys.get)
    assert err.value.reason is Reason.BAD_SIGNATURE
    with pytest.raises(ProtocolError) as err:
        open_event(sign_event(make_event(dev="ghost"), a), keys.get)
    assert err.value.reason is Reason.UNKNOWN_DEVICE


def test_event_has_no_room_for_personal_data():
    payload = cbor.loads_strict(
        cose.parse_sign1(sign_event(make_event(), SigningKey.generate())).payload
    )
    assert not {"name", "doc4", "dob"} & set(payload)
    bad = make_event().to_cbor() | {"seq": 0}
    key = SigningKey.generate()
    with pytest.raises(ProtocolError) as err:
        open_event(cose.sign1(cbor.dumps(bad), key), {"lane1-a": bytes(key.verify_key)}.get)
    assert err.value.reason is Reason.BAD_EVENT


def test_topics_and_parsing():
    assert topics.event_topic("HN-01", "lane1-a") == "chot/v1/HN-01/dev/lane1-a/event"
    assert topics.site_device_filter("HN-01", "event") == "chot/v1/HN-01/dev/+/event"
    assert topics.shared("chot/v1/HN-01/dev/+/event", "gw") == "$share/gw/chot/v1/HN-01/dev/+/event"
    parsed = topics.parse_device_topic("chot/v1/HN-01/dev/lane1-a/ack")
    assert (parsed.site, parsed.device, parsed.leaf) == ("HN-01", "lane1-a", "ack")
    assert topics.parse_device_topic("chot/v1/HN-01/trust") is None
    for bad in ("a/b", "+", "#", "", "x" * 65, "-lead"):
        with pytest.raises(ValueError):
            topics.event_topic("HN-01", bad)


def test_registry_round_trip_revocation_and_tokens(tmp_path):
    key = SigningKey.generate()
    registry = Registry()
    registry.add(Signer("lane1-a", "HN-01", "device", bytes(key.verify_key), lane="lane-1"))
    registry.add(Signer("gw-1", "HN-01", "gateway", bytes(SigningKey.generate().verify_key)))
    registry.set_token("gw-1", "s3cret")
    registry.save(tmp_path / "registry.json")
    assert "s3cret" not in (tmp_path / "registry.json").read_text()
    loaded = Registry.load(tmp_path / "registry.json")
    assert loaded.key_for("lane1-a") == bytes(key.verify_key)
    assert loaded.check_token("gw-1", "s3cret") and not loaded.check_token("gw-1", "guess")
    loaded.revoke("lane1-a")
    assert loaded.key_for("lane1-a") is None and loaded.is_revoked("lane1-a")
    assert json.loads(json.dumps(loaded.to_json()))["signers"]["lane1-a"]["revoked"] is True


def test_revocation_list_of_100k_fits_a_retained_message():
    import os

    pki = make_pki()
    refs = [os.urandom(16) for _ in range(100_000)]
    raw = sign_revocation_list(
        pass_refs=refs, version=1, issued_at=NOW, expires_at=NOW + 86400, root_key=pki.root
    )
    revocations = open_revocation_list(raw, pki.keyring)
    assert len(revocations) == 100_000
    assert 1_600_000 <= len(raw) < 1_700_000  # 16 bytes per entry plus a small envelope
    assert all(revocations.is_pass_revoked(r) for r in refs[:1000])
    assert not revocations.is_pass_revoked(os.urandom(16))
