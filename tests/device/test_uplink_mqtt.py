"""The device app against a real Mosquitto (password + ACL) and a tiny in-test gateway.

One scenario, in the order an operator would live it: events stream in order; the broker is
killed with SIGKILL mid-stream and restarted on the same port, and every event still arrives
(outbox replay, duplicates removed by event id); a newer trust list is adopted and a rollback
refused; after a device restart the newer list is still used and seq numbers continue.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from device.app import DeviceApp
from device.gpio import SimulatedBackend
from harness.polling import wait_until as wait_for
from protocol import topics
from protocol.clock import ClockState
from tests.support.device_pipeline import (
    Pki,
    QueueSource,
    TestGateway,
    device_public_key,
    write_device,
)

DEV, SITE = "hn01-lane1", "HN-01"
ACL = f"""
user {DEV}
topic write chot/v1/{SITE}/dev/{DEV}/event
topic write chot/v1/{SITE}/dev/{DEV}/status
topic write chot/v1/{SITE}/dev/{DEV}/heartbeat
topic read chot/v1/{SITE}/dev/{DEV}/ack
topic read chot/v1/{SITE}/dev/{DEV}/config
topic read chot/v1/{SITE}/trust
topic read chot/v1/{SITE}/revocations

user gateway
topic readwrite chot/v1/#
"""


class Running:
    """The app's frame loop in a thread, as the service runs it."""

    def __init__(self, app: DeviceApp) -> None:
        self.app = app
        self.thread = threading.Thread(target=app.run_for, kwargs={"seconds": 120}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.request_stop()
        self.thread.join(10)
        self.app.close()


@pytest.fixture
def site(tmp_path, mosquitto, monkeypatch):
    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    monkeypatch.delenv("CHOT_MQTT_PASSWORD", raising=False)
    broker = mosquitto(users={DEV: "dev-pw", "gateway": "gw-pw"}, acl=ACL)
    pki = Pki()
    config = write_device(tmp_path / "unit", pki, port=broker.port, password="dev-pw")
    gateway = TestGateway(
        broker.host, broker.port, SITE, {DEV: device_public_key(tmp_path / "unit")}, "gw-pw"
    )
    yield broker, pki, config, gateway
    gateway.close()


def test_stream_broker_kill_trust_update_and_restart(site, caplog):
    caplog.set_level(logging.DEBUG)
    broker, pki, config, gateway = site
    source = QueueSource()
    app = DeviceApp(config, source=source, backend=SimulatedBackend())
    run = Running(app)
    try:
        # 1. a stream of distinct passes arrives in order, no gaps, and is acknowledged
        for i in range(40):
            source.put(pki.make_pass(i))
        assert gateway.wait(lambda g: len(g.events) == 40), gateway.arrivals
        assert gateway.arrivals == list(range(1, 41))
        assert wait_for(lambda: app.outbox.depth == 0 and app.outbox.acked_seq == 40)
        assert app.state == "idle"
        assert gateway.wait(lambda g: "heartbeat" in g.retained)
        beat = json.loads(gateway.retained["heartbeat"][-1])
        assert beat["clock"] == "synced" and beat["trust_version"] == 1
        assert {"fps", "decoder_ms", "outbox_depth", "t"} <= set(beat)
        assert json.loads(gateway.retained["status"][-1])["state"] == "online"

        # 2. kill -9 the broker mid-stream: 20 events delivered but not yet acknowledged, more
        #    decided while the broker is down; all must arrive once it is back, none twice
        gateway.acking = False
        for i in range(20):
            source.put(pki.make_pass(100 + i))
        assert gateway.wait(lambda g: len(g.events) == 60)
        feeder = threading.Thread(
            target=lambda: [
                (source.put(pki.make_pass(200 + i)), time.sleep(0.02)) for i in range(40)
            ]
        )
        feeder.start()
        time.sleep(0.2)
        broker.kill()
        gateway.acking = True
        feeder.join()
        assert wait_for(lambda: app.outbox.last_seq == 100)
        assert wait_for(lambda: app.state == "offline", timeout=5)
        assert app.outbox.depth > 0  # not acknowledged while the broker is down
        broker.start()
        assert gateway.wait(lambda g: len(g.events) == 100, timeout=30), len(gateway.events)
        assert sorted(gateway.arrivals) == list(range(1, 101))  # none lost, none twice
        assert wait_for(lambda: app.outbox.depth == 0 and app.state == "idle", timeout=10)
        assert gateway.rejected == [] and app.uplink.stats["connects"] >= 2
        # the unit rewinds to its ack point and republishes all 20 unacknowledged events; the
        # gateway acks the first copy it sees (up to 60), which may reach the unit before the
        # last few copies are sent again, so the gateway sees at least one of them twice
        assert app.uplink.stats["republished"] >= 20 and gateway.duplicates >= 1

        # 3. a newer trust list (adds an issuer key) is adopted; a lower version is refused
        second = SigningKey.generate()
        gateway.publish_document(topics.trust_topic(SITE), pki.trust_list(3, extra_keys=(second,)))
        assert wait_for(lambda: app.decider.trust.version == 3)
        gateway.publish_document(topics.trust_topic(SITE), pki.trust_list(2))
        assert wait_for(lambda: app.refused.get("trust") == "rollback")
        assert app.decider.trust.version == 3
        source.put(pki.make_pass(500, key=second))
        assert gateway.wait(lambda g: len(g.events) == 101)
    finally:
        run.stop()
    status = gateway.wait(lambda g: json.loads(g.retained["status"][-1])["state"] == "stopped")
    assert status

    # 4. restart: the persisted v3 list is used (bundle still holds v1), seq continues at 102
    source = QueueSource()
    app = DeviceApp(config, source=source, backend=SimulatedBackend())
    run = Running(app)
    try:
        assert app.decider.trust.version == 3 and app.outbox.last_seq == 101
        source.put(pki.make_pass(300, key=second))
        assert gateway.wait(lambda g: len(g.events) == 102)
        newest = max(gateway.events.values(), key=lambda e: e.seq)
        assert (newest.seq, newest.verdict, newest.reason) == (102, "pass", "ok")
        assert newest.clock == ClockState.SYNCED.value and newest.tlv == 3
        assert wait_for(lambda: app.outbox.depth == 0)
    finally:
        run.stop()

    # privacy: no name, doc4, dob or raw QR text in events or logs
    assert not any(b"Nguyen" in raw or b"CHOT1:" in raw for raw in gateway.raw)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Nguyen" not in logged and "CHOT1:" not in logged
    assert "adopted trust version 3" in logged


def test_duplicate_and_held_pass_events(site):
    _, pki, config, gateway = site
    source = QueueSource()
    backend = SimulatedBackend()
    app = DeviceApp(config, source=source, backend=backend)
    run = Running(app)
    try:
        text = pki.make_pass()
        for _ in range(5):  # held in front of the camera: one event
            source.put(text)
        assert gateway.wait(lambda g: len(g.events) == 1)
        time.sleep(0.7)  # longer than debounce_s (0.5): presented again
        source.put(text)
        assert gateway.wait(lambda g: len(g.events) == 2)
        first, second = sorted(gateway.events.values(), key=lambda e: e.seq)
        assert (first.verdict, second.verdict, second.reason) == (
            "pass",
            "fail",
            "duplicate_recent",
        )
        assert first.ref == second.ref and first.sub is not None and first.kind == "declaration"
        assert wait_for(lambda: any(t.name == "red" and t.state for t in backend.history))
        assert any(t.name == "green" and t.state for t in backend.history)
    finally:
        run.stop()


def test_service_process_synthetic_camera_notify_and_sigterm(site, tmp_path):
    """`python -m device.cli device run` as systemd runs it: rendered camera frames decoded by
    zxing-cpp, READY=1 and WATCHDOG=1 on $NOTIFY_SOCKET, SIGTERM -> retained "stopped"."""
    _, pki, config, gateway = site
    unit = config.device.signing_key_file.parent
    # enough distinct passes that the queue does not come round again (a repeat is
    # duplicate_recent) before the test stops the unit
    (unit / "passes.txt").write_text("\n".join(pki.make_pass(i) for i in range(20)) + "\n")
    write_device(
        unit,
        pki,
        port=config.mqtt.port,
        password="dev-pw",
        camera={
            "source": "synthetic",
            "passes_file": "passes.txt",
            "fps": 30,
            "arrival_per_min": 120,
            "hold_s": 0.5,
            "difficulty": "easy",
        },
    )
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    env = os.environ | {
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "2000000",
        "PYTHONPATH": str(Path(__file__).parents[2]),
        # this machine's kernel clock reads unsynchronised; a deployed unit's timesyncd syncs
        "CHOT_CLOCK_STATE": "synced",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device.cli",
            "device",
            "run",
            "--config",
            str(unit / "device.toml"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        messages = set()
        while not {"READY=1", "WATCHDOG=1"} <= messages:
            messages |= set(notify.recv(4096).decode().splitlines())
        assert gateway.wait(lambda g: len(g.events) >= 2, timeout=30), len(gateway.events)
        verdicts = {(e.verdict, e.reason) for e in gateway.events.values()}
        assert verdicts == {("pass", "ok")}, verdicts
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert gateway.wait(lambda g: json.loads(g.retained["status"][-1])["state"] == "stopped")


def test_tls_listener_with_site_ca(tmp_path, mosquitto, monkeypatch):
    """The unit verifies the broker against the site CA (ca_file) and logs in with a password;
    the test gateway uses a second, plain loopback listener of the same broker."""
    from harness.mosquitto import TlsFiles, free_port
    from provisioning.tls import create_ca, create_server_cert

    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    create_ca(pki_dir, SITE)
    create_server_cert(pki_dir, pki_dir, ["127.0.0.1"])
    plain = free_port()
    extra = f"listener {plain} 127.0.0.1"
    tls = TlsFiles(pki_dir / "ca.crt", pki_dir / "server.crt", pki_dir / "server.key")
    broker = mosquitto(
        users={DEV: "dev-pw", "gateway": "gw-pw"}, acl=ACL, tls=tls, extra_conf=extra
    )
    pki = Pki()
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "ca.crt").write_bytes((pki_dir / "ca.crt").read_bytes())
    config = write_device(
        unit, pki, port=broker.port, password="dev-pw", mqtt={"ca_file": "ca.crt"}
    )
    gateway = TestGateway(broker.host, plain, SITE, {DEV: device_public_key(unit)}, "gw-pw")
    source = QueueSource()
    app = DeviceApp(config, source=source, backend=SimulatedBackend())
    run = Running(app)
    try:
        source.put(pki.make_pass())
        assert gateway.wait(lambda g: len(g.events) == 1)
        assert wait_for(lambda: app.outbox.depth == 0) and app.uplink.connected
    finally:
        run.stop()
        gateway.close()
