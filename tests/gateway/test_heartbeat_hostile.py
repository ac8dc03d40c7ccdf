"""One malformed heartbeat must not take the operators' view down (issue #13, item 5).

A stolen unit's MQTT login publishes hostile heartbeats to a real Mosquitto: over-long, wrong
types, huge numbers, invalid JSON, NaN. The gateway (in process, real MQTT ingest) refuses
each against protocol/status.py and counts it; the status page, /api/status, /metrics and
`chot gateway status --json` answer 200 throughout and the refusal counter rises. A store
written by an older gateway (heartbeat cut at 2,000 characters: invalid JSON) is read too.
"""

import json
import time
from dataclasses import asdict

import pytest
from fastapi.testclient import TestClient

from gateway.app import GatewayApp
from harness.gateway_cli import gateway_status_json
from protocol import topics
from protocol.status import Heartbeat, encode_heartbeat
from tests.support.gateway_app import broker_of, logged_in, running_gateway
from tests.support.gateway_core import ACL, SITE, USERS, Scanner, Site, make_event, wait_for

GOOD = Heartbeat(
    t=int(time.time()),
    state="idle",
    seq=1,
    outbox_depth=0,
    outbox_full=False,
    unrecorded=0,
    fps=9.5,
    decoder_ms=2.0,
    clock="synced",
    trust_version=3,
)


def hostile() -> list[bytes]:
    good = asdict(GOOD)
    return [
        json.dumps({**good, "state": "x" * 5_000}).encode(),  # over-long
        json.dumps({**good, "outbox_depth": "lots"}).encode(),  # wrong type
        json.dumps({**good, "fps": [1, 2]}).encode(),
        json.dumps({**good, "clock": {"a": 1}}).encode(),
        json.dumps({**good, "trust_version": 10**40}).encode(),  # huge number
        json.dumps({**good, "seq": 2**64}).encode(),
        b'{"t": 1, "fps": NaN}',
        b"{not json",  # invalid JSON
        b"[1, 2, 3]",
        b"\xff\xfe",
        json.dumps({**good, "outbox_full": "yes"}).encode(),
    ]


@pytest.fixture
def broker(mosquitto):
    return mosquitto(users=USERS, acl=ACL)


@pytest.fixture
def app(tmp_path, broker):
    with running_gateway(Site(tmp_path / "site", devices=1), broker) as gateway:
        yield gateway


def all_views_answer(client: TestClient, config_path) -> dict:
    """Every operator view answers 200; returns /api/status."""
    assert client.get("/").status_code == 200
    status = client.get("/api/status")
    assert status.status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/devices").status_code == 200
    gateway_status_json(config_path)
    return status.json()


def bad_heartbeats(app: GatewayApp) -> int:
    return app.store.reject_counts().get("bad_heartbeat", 0)


def test_hostile_heartbeats_are_refused_counted_and_never_break_a_view(app) -> None:
    site = app.site
    scanner = Scanner(broker_of(app))
    client = logged_in(app)
    beat_topic = topics.heartbeat_topic(SITE, "d01")
    try:
        scanner.raw(topics.status_topic(SITE, "d01"), b'{"state":"online","t":1}')
        scanner.raw(beat_topic, encode_heartbeat(GOOD), qos=0)
        raw, _ = make_event(site.keys["d01"], "d01", 1)
        scanner.publish("d01", raw)
        scanner.wait_acks({"d01": 1})
        assert wait_for(lambda: any(d.heartbeat for d in app.store.devices()), timeout=10)
        all_views_answer(client, app.config_path)

        payloads = hostile()
        for n, payload in enumerate(payloads, start=1):
            scanner.raw(beat_topic, payload, qos=0)
            assert wait_for(lambda n=n: bad_heartbeats(app) >= n, timeout=10)
            status = all_views_answer(client, app.config_path)
            # the last good heartbeat is still what the page shows
            (row,) = status["devices"]
            assert (row["fps"], row["clock"], row["trust_version"]) == (9.5, "synced", 3)
        # one far over the gateway's MQTT Maximum Packet Size: the broker drops it for us
        scanner.raw(beat_topic, json.dumps({**asdict(GOOD), "state": "x" * 300_000}), qos=0)
        scanner.raw(beat_topic, b"{not json", qos=0)  # sent after it: once seen, it was
        assert wait_for(lambda: bad_heartbeats(app) == len(payloads) + 1, timeout=10)
        status = all_views_answer(client, app.config_path)
        payloads.append(b"{not json")
        assert bad_heartbeats(app) == len(payloads)
        assert status["health"]["rejects"]["bad_heartbeat"] == len(payloads)
        metrics = client.get("/metrics").text
        assert f'chot_gateway_rejects_total{{reason="bad_heartbeat"}} {len(payloads)}' in metrics
        assert gateway_status_json(app.config_path)["rejects"]["bad_heartbeat"] == len(payloads)
        stored = app.store._db().execute("SELECT heartbeat FROM devices").fetchall()
        assert [json.loads(h) for (h,) in stored if h] == [asdict(GOOD)]  # never stored
    finally:
        scanner.close()


def test_an_older_stores_cut_heartbeat_does_not_break_a_view(app) -> None:
    """Before heartbeats were checked, the store kept them cut at 2,000 characters."""
    cut = json.dumps({"fps": 1, "clock": "synced", "pad": "x" * 3000})[:2000]
    db = app.store._db()
    db.execute(
        "INSERT INTO devices (dev, status, heartbeat, heartbeat_ms) VALUES (?,?,?,?)",
        ("d09", "online", cut, int(time.time() * 1000)),
    )
    db.execute(
        "INSERT INTO devices (dev, status, heartbeat, heartbeat_ms) VALUES (?,?,?,?)",
        ("d08", "online", json.dumps({"outbox_depth": "many", "t": "x", "clock": 5}), 1),
    )
    client = logged_in(app)
    status = all_views_answer(client, app.config_path)
    rows = {row["device"]: row for row in status["devices"]}
    assert rows["d09"]["fps"] is None and rows["d08"]["outbox_depth"] is None
