"""protocol/status.py: the availability, heartbeat and ack payloads round-trip, and every
field's type, bound and the size limit are enforced on both sides."""

import json
from dataclasses import replace

import pytest

from protocol.status import (
    MAX_HEARTBEAT_BYTES,
    MAX_STATUS_BYTES,
    Availability,
    Heartbeat,
    PayloadError,
    encode_ack,
    encode_heartbeat,
    encode_status,
    parse_ack,
    parse_heartbeat,
    parse_status,
)

HEARTBEAT = Heartbeat(
    t=1_700_000_000,
    state="idle",
    seq=42,
    outbox_depth=3,
    outbox_full=False,
    unrecorded=0,
    fps=14.8,
    decoder_ms=0.42,
    clock="synced",
    trust_version=7,
    cpu_temp=51.2,
)


def test_status_round_trip_and_last_will() -> None:
    assert parse_status(encode_status("online", 1_700_000_000)) == Availability(
        "online", 1_700_000_000
    )
    assert json.loads(encode_status("offline", 0)) == {"state": "offline", "t": 0}
    assert parse_status(b'{"state": "stopped", "t": 5, "extra": 1}').state == "stopped"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"state": "sleeping", "t": 1}',
        b'{"state": "online", "t": -1}',
        b'{"state": "online", "t": true}',
        b'{"state": "online", "t": 1.5}',
        b'{"state": "online"}',
        b'["online", 1]',
        b"online",
        b'{"state": "online", "t": 1, "pad": "' + b"x" * MAX_STATUS_BYTES + b'"}',
    ],
)
def test_bad_status_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_status(payload)


def test_encode_status_refuses_what_parse_would() -> None:
    with pytest.raises(PayloadError):
        encode_status("rebooting", 1)


def test_heartbeat_round_trip() -> None:
    raw = encode_heartbeat(HEARTBEAT)
    assert parse_heartbeat(raw) == HEARTBEAT
    no_temp = replace(HEARTBEAT, cpu_temp=None, trust_version=None)
    raw = encode_heartbeat(no_temp)
    assert "cpu_temp" not in json.loads(raw)
    assert parse_heartbeat(raw) == no_temp


def test_heartbeat_ignores_unknown_keys_from_a_newer_device() -> None:
    data = json.loads(encode_heartbeat(HEARTBEAT)) | {"battery": 80}
    assert parse_heartbeat(json.dumps(data).encode()) == HEARTBEAT


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seq", -1),
        ("seq", "42"),
        ("seq", True),
        ("seq", 2**63),
        ("outbox_full", 0),
        ("fps", -1.0),
        ("fps", 5000),
        ("decoder_ms", -0.1),
        ("clock", "roughly"),
        ("state", "Idle; DROP"),
        ("state", "x" * 40),
        ("trust_version", -3),
        ("cpu_temp", 900),
        ("t", None),
    ],
)
def test_heartbeat_field_out_of_contract_is_refused(key: str, value: object) -> None:
    data = json.loads(encode_heartbeat(HEARTBEAT))
    data[key] = value
    with pytest.raises(PayloadError, match=key):
        parse_heartbeat(json.dumps(data).encode())
    with pytest.raises(PayloadError, match=key):
        encode_heartbeat(replace(HEARTBEAT, **{key: value}))


def test_heartbeat_nan_and_oversize_are_refused() -> None:
    text = encode_heartbeat(HEARTBEAT).decode().replace('"fps":14.8', '"fps":NaN')
    with pytest.raises(PayloadError):
        parse_heartbeat(text.encode())
    with pytest.raises(PayloadError, match="fps"):
        encode_heartbeat(replace(HEARTBEAT, fps=float("inf")))
    padded = json.loads(encode_heartbeat(HEARTBEAT)) | {"note": "x" * MAX_HEARTBEAT_BYTES}
    with pytest.raises(PayloadError, match="more than"):
        parse_heartbeat(json.dumps(padded).encode())


def test_ack_round_trip_and_refusals() -> None:
    assert encode_ack(17) == b'{"seq":17}'
    assert parse_ack(b'{"seq": 17}') == 17
    for bad in (b'{"seq": -1}', b'{"seq": "1"}', b'{"seq": false}', b"[1]", b"{}", b"\xff"):
        with pytest.raises(PayloadError):
            parse_ack(bad)
    with pytest.raises(PayloadError):
        encode_ack(-5)
