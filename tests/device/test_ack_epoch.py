"""Issue #13 item 3: a unit deletes only what a signed ack for its own epoch names.

The unit's ack handling (Uplink._handle_ack, as paho's thread calls it) over a real outbox:
(a) a unit re-imaged with the same bundle has a fresh epoch, so the gateway's acks for the
old epoch delete none of its next 120 decisions; (b) acks published with the gateway's MQTT
login but unsigned (the v1 JSON), signed by another key, for another device or epoch, or for
seqs never sent delete nothing; a genuine one deletes exactly what it names. Also: a signed
ack from a synchronised gateway that answers a heartbeat bounds an unknown clock.
"""

import json

from nacl.signing import SigningKey

from device.clock_source import ClockSource
from device.outbox import Outbox
from device.uplink import MqttOptions, Uplink
from protocol.ack import Ack, SeqRange, sign_ack
from protocol.clock import ClockState
from tests.device.test_outbox import fields

DEV, SITE, GW = "hn01-lane1", "HN-01", "hn01-gw"
DEVICE_KEY = SigningKey.generate()
GATEWAY_KEY = SigningKey.generate()


def unit(tmp_path, name: str = "outbox.db", **kw) -> Uplink:
    box = Outbox(tmp_path / name, DEV, SITE, DEVICE_KEY, group_commit_s=0)
    return Uplink(
        MqttOptions(),
        DEV,
        SITE,
        box,
        on_document=lambda kind, payload: None,
        health=dict,
        gateway_keys={GW: bytes(GATEWAY_KEY.verify_key)},
        **kw,
    )


def publish_all(link: Uplink) -> None:
    """What the pump does for the rows it hands to the broker (no broker needed here)."""
    rows = link.outbox.pending(limit=10_000)
    if rows:
        link.acks.note_sent(rows[-1].seq)


def ack(ep: int, upto: int = 0, ranges=(), key=GATEWAY_KEY, dev=DEV, t_ms=0, hb=None) -> bytes:
    return sign_ack(
        Ack(GW, dev, ep, upto, tuple(SeqRange(*r) for r in ranges), t_ms, True, hb), key
    )


def test_reimaged_unit_keeps_its_next_120_decisions(tmp_path):
    old = unit(tmp_path / "before")
    for i in range(500):
        old.outbox.append(fields(i))
    publish_all(old)
    stale = ack(old.outbox.epoch, upto=500)  # what the gateway keeps saying for the old unit
    old._handle_ack(stale)
    old.outbox.settle(force=True)
    assert old.outbox.depth == 0

    new = unit(tmp_path / "reimaged")  # same bundle, fresh outbox: a new epoch
    assert new.outbox.epoch != old.outbox.epoch
    for i in range(120):
        new.outbox.append(fields(i))
    publish_all(new)
    for _ in range(3):
        new._handle_ack(stale)  # the broker's queued and retried acks for the old epoch
    new.outbox.settle(force=True)
    assert new.outbox.depth == 120 and len(new.outbox.pending(limit=500)) == 120
    assert new.stats["acks_refused"] == 3 and new.stats["acks"] == 0


def test_forged_acks_delete_nothing_and_a_genuine_one_only_what_it_names(tmp_path):
    link = unit(tmp_path)
    for i in range(60):
        link.outbox.append(fields(i))
    publish_all(link)
    ep = link.outbox.epoch
    forged = [
        json.dumps({"seq": 60}).encode(),  # v1: unsigned, from the gateway's MQTT login
        ack(ep, upto=60, key=SigningKey.generate()),  # signed by another key
        ack(ep + 1, upto=60),  # another epoch
        ack(ep, upto=60, dev="hn01-lane2"),  # another device
        ack(ep, upto=61),  # a seq this unit has not sent
        b"\xd2\x84" + bytes(80),  # garbage
    ]
    for payload in forged:
        link._handle_ack(payload)
    link.outbox.settle(force=True)
    assert link.outbox.depth == 60 and link.stats["acks_refused"] == len(forged)

    link._handle_ack(ack(ep, upto=10, ranges=[(20, 24)]))
    link.outbox.settle(force=True)
    left = [row.seq for row in link.outbox.pending(limit=100)]
    assert left == [*range(11, 20), *range(25, 61)] and link.outbox.acked_seq == 10


def test_signed_heartbeat_answer_bounds_an_unknown_clock(tmp_path):
    mono = [1000.0]
    clock = ClockSource(
        probe=lambda: ClockState.UNKNOWN, wall=lambda: 0.0, monotonic=lambda: mono[0]
    )
    link = unit(tmp_path, on_gateway_time=clock.note_gateway_time)
    assert clock.read().state is ClockState.UNKNOWN
    link.acks.heartbeats[77] = __import__("time").monotonic()  # heartbeat nonce 77 left
    link._handle_ack(ack(link.outbox.epoch, t_ms=1_700_000_000_000, hb=77))
    reading = clock.read()
    assert reading.state is ClockState.SYNCED
    assert 1_700_000_000 <= reading.now <= 1_700_000_000 + 2  # within the documented bound
    link._handle_ack(ack(link.outbox.epoch, t_ms=1_600_000_000_000, hb=78))  # no such nonce
    assert abs(clock.read().now - reading.now) <= 1
