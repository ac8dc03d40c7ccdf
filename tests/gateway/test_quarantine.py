"""One event the store refuses cannot wedge the commit loop (issue #13, item 1).

The contract now bounds every value, but a store can still refuse a row (a constraint, a
value SQLite cannot hold): before, the whole batch failed, nothing was acked, and the broker
redelivered it for ever. Here the store file carries a trigger that refuses one device's
seq 4, a stand-in for any such refusal. A real gateway under a real Mosquitto: every other
event is committed, acked end to end and forwarded; the refused one is set aside in the
quarantine table with its reason, acked (its device's ack moves past it) and shown on
/api/status, /metrics and `chot gateway status --json`.
"""

import pytest

from gateway.config import GatewayConfig
from gateway.store import Store
from harness.gateway_cli import gateway_status_json
from tests.support.central_stub import CentralStub
from tests.support.gateway_app import broker_of, logged_in, running_gateway
from tests.support.gateway_core import ACL, USERS, Scanner, Site, make_event, wait_for

REFUSE_D02_SEQ_4 = """
CREATE TRIGGER refuse_one BEFORE INSERT ON events WHEN NEW.dev = 'd02' AND NEW.seq = 4
BEGIN SELECT RAISE(ABORT, 'refused by a store constraint'); END;
"""


@pytest.fixture
def broker(mosquitto):
    return mosquitto(users=USERS, acl=ACL)


def refuse_d02_seq_4(config: GatewayConfig) -> None:
    """Install the refusing trigger in the store before the gateway opens it."""
    store = Store(config.store_path)
    store._db().executescript(REFUSE_D02_SEQ_4)
    store.close()


@pytest.fixture
def gateway(tmp_path, broker):
    site = Site(tmp_path / "site", devices=3)
    central = CentralStub(tmp_path / "central.db", {"gw-a": "tok-a"}, key_for=site.key_for)
    central.start()
    try:
        with running_gateway(
            site,
            broker,
            session_secret="cd" * 32,
            before_start=refuse_d02_seq_4,
            central_url=central.url,
        ) as app:
            app.central = central  # type: ignore[attr-defined]
            yield app
    finally:
        central.stop()


def test_a_refused_event_is_quarantined_and_everything_else_flows(gateway) -> None:
    site, central = gateway.site, gateway.central
    scanner = Scanner(broker_of(gateway))
    try:
        good, poison, poison_raw = set(), b"", b""
        for seq in range(1, 11):
            for dev in ("d01", "d02", "d03"):
                raw, event = make_event(site.keys[dev], dev, seq)
                scanner.publish(dev, raw)
                if (dev, seq) == ("d02", 4):
                    poison, poison_raw = event.eid, raw
                else:
                    good.add(event.eid)
        # every device acked to the end: the quarantined seq 4 does not hold d02's ack back
        assert scanner.wait_acks({"d01": 10, "d02": 10, "d03": 10}) == {
            "d01": 10,
            "d02": 10,
            "d03": 10,
        }
        assert wait_for(lambda: central.stored_eids() == good, timeout=20)
        assert gateway.store.event_count() == 29

        (row,) = gateway.store.recent_quarantine()
        assert (row["device"], row["seq"], row["eid"]) == ("d02", 4, poison.hex())
        assert "refused by a store constraint" in row["reason"]

        client = logged_in(gateway)
        status = client.get("/api/status").json()
        assert status["health"]["quarantined"] == 1
        assert "events_quarantined" in status["health"]["alerts"]
        assert status["quarantine"][0]["eid"] == poison.hex()
        assert "chot_gateway_quarantined_total 1" in client.get("/metrics").text
        assert gateway_status_json(gateway.config_path)["counters"]["quarantined"] == 1

        # the device resends it (it lost our ack, say): acked again, kept once
        scanner.publish("d02", poison_raw)
        raw, _ = make_event(site.keys["d02"], "d02", 11)
        scanner.publish("d02", raw)
        assert scanner.wait_acks({"d02": 11})["d02"] == 11
        counters = gateway.store.counters()
        assert (counters["quarantined"], counters["quarantine_duplicate"]) == (1, 1)
    finally:
        scanner.close()
