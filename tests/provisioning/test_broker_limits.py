"""The provisioned site broker against a stolen unit's login (issue #13, items 6 and 7).

A real gateway process from its provisioned bundle, under Mosquitto started from
`chot provision broker config`'s output (TLS, dynamic security; the units' logins from the
gateway):
- a unit login that connects with the gateway's client id (either form) cannot kick the
  gateway or wipe its session: the broker replaces a client id with the login;
- a flood of QoS 0 heartbeats from a unit login (256 KB ones and small invalid ones) while
  another unit's events flow: every event is committed and acked, and the gateway's resident
  memory stays bounded (it grew by 939 MB in 15 s before).
"""

import os
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from harness.gateway_cli import gateway_status_json
from harness.polling import WaitTimeout
from harness.scan_events import signed_scan
from protocol import topics
from protocol.ack import open_signed_ack
from tests.provisioning.conftest import SITE, wait_for
from tests.provisioning.test_broker import Client
from tests.support.gateway_core import start_gateway_process


@pytest.fixture
def units(home):
    a = home.add_device(SITE, "hn01-lane1", broker_host="127.0.0.1")
    b = home.add_device(SITE, "hn01-lane2", lane="lane-2")
    gw = home.add_gateway(SITE, "hn01-gw")
    return a, b, gw


@pytest.fixture
def gateway(units, site_broker, tmp_path):
    """The provisioned gateway as a process, pointed at the test broker's port."""
    _a, _b, gw = units
    broker = site_broker()
    config = gw.folder / "gateway.toml"
    text = config.read_text().replace("port = 8883", f"port = {broker.port}")
    text = text.replace('url = "http://127.0.0.1:8600"\n', "")  # no central here
    config.write_text(text)
    (gw.folder / "gateway.key").chmod(0o600)
    log = tmp_path / "gateway.log"
    process = start_gateway_process(config, log)
    # the units' logins come from the gateway (dynamic security, from its registry)
    applied = "broker logins follow the registry"
    assert wait_for(lambda: log.exists() and applied in log.read_text(), 30), "no unit logins"
    yield broker, gw, process, log
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(15)


class Unit(Client):
    """A unit's login that publishes signed events and records its end-to-end acks."""

    def __init__(self, broker, bundle, device_id: str, home) -> None:
        super().__init__(broker, bundle.folder, device_id)
        self.device_id, self.bundle, self.home = device_id, bundle, home
        self.subscribe(topics.ack_topic(SITE, device_id))

    @property
    def acked(self) -> int:
        """The highest seq the gateway's signed acks name (protocol/ack.py)."""
        keys = {s.id: s.public_key for s in self.home.registry() if s.role == "gateway"}
        acks = [open_signed_ack(p, keys) for t, p in self.messages if t.endswith("/ack")]
        return max((a.highest() for a in acks if a.dev == self.device_id), default=0)

    def send(self, seq: int) -> None:
        raw = signed_scan(self.bundle.folder / "device.key", self.device_id, SITE, seq, ep=1)
        self.c.publish(topics.event_topic(SITE, self.device_id), raw, qos=1)

    def deliver(self, seq: int, timeout: float = 30) -> bool:
        """Publish seq until the gateway acks it (the gateway may still be subscribing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(seq)
            try:
                return bool(wait_for(lambda: self.acked >= seq, timeout=2))
            except WaitTimeout:
                continue
        return False


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_unit_login_cannot_take_the_gateways_client_id(home, units, gateway) -> None:
    a, _b, gw = units
    broker, _, process, log = gateway
    unit = Unit(broker, a, a.device_id, home)
    try:
        assert unit.deliver(1)
        password = (a.folder / "mqtt.password").read_text().strip()
        for client_id in (f"chot-gw-{gw.gateway_id}", gw.gateway_id):
            intruder = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
            intruder.tls_set(ca_certs=str(a.folder / "ca.crt"))
            intruder.username_pw_set(a.device_id, password)
            connected = threading.Event()
            intruder.on_connect = lambda *_, done=connected: done.set()
            intruder.connect(broker.host, broker.port, clean_start=True)
            intruder.loop_start()
            assert connected.wait(5)  # let in, but as itself
            time.sleep(0.5)
            intruder.disconnect()
            intruder.loop_stop()
        unit = Unit(broker, a, a.device_id, home)  # the intruder, as itself, replaced this one
        assert unit.deliver(2, timeout=10)
        assert process.poll() is None
        assert "disconnected from broker" not in log.read_text()
        broker_log = (broker.folder / "mosquitto.log").read_text()
        assert f"Client {gw.gateway_id} already connected" not in broker_log
    finally:
        unit.close()


def test_a_heartbeat_flood_leaves_events_flowing_and_memory_bounded(home, units, gateway) -> None:
    a, b, gw = units
    broker, _, process, _log = gateway
    events = Unit(broker, b, b.device_id, home)
    flooder = Client(broker, a.folder, a.device_id)
    try:
        assert events.deliver(1)
        time.sleep(1)
        baseline = rss_kb(process.pid)
        stop = threading.Event()
        big = b"x" * 256_000
        small = b'{"t": "not a heartbeat"' + b" " * 800

        def flood() -> None:
            topic = topics.heartbeat_topic(SITE, a.device_id)
            n = 0
            while not stop.is_set():
                flooder.c.publish(topic, big if n % 4 == 0 else small, qos=0)
                n += 1
                if n % 200 == 0:
                    time.sleep(0.01)  # let paho's loop write

        flooding = threading.Thread(target=flood, daemon=True)
        flooding.start()
        peak = baseline
        for seq in range(2, 202):
            events.send(seq)
            if seq % 20 == 0:
                peak = max(peak, rss_kb(process.pid))
                time.sleep(0.5)
        for _ in range(10):
            peak = max(peak, rss_kb(process.pid))
            time.sleep(0.5)
        stop.set()
        flooding.join(5)
        assert wait_for(lambda: events.acked >= 201, timeout=60), events.acked
        peak = max(peak, rss_kb(process.pid))
        assert peak - baseline < 80_000, (baseline, peak)  # kB; it was 939 MB before
        report = gateway_status_json(gw.folder / "gateway.toml")
        refused = report["rejects"].get("bad_heartbeat", 0)
        dropped = sum(v for k, v in report["counters"].items() if k.startswith("dropped."))
        assert refused + dropped > 0
        assert report["counters"]["stored"] == 201
    finally:
        events.close()
        flooder.close()
