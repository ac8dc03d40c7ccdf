"""Site gateway: durable ingest rate, reconnect-storm drain time and memory, each against a bare
paho QoS 1 subscriber on the same Mosquitto in the same run.

- Live burst: N signed events from 10 devices published as fast as one paho client can; the
  gateway's rate counts an event once it is verified, committed to SQLite (synchronous=FULL)
  and acknowledged end to end (the ack a device trims its outbox on). Goal >= 0.8x the raw
  subscriber, zero loss.
- Reconnect storm: 500 devices x 200 events queued in the broker while the subscriber is away
  (its persistent session), then it connects and drains. Quick mode: 100 x 50.
- Gateway RSS (peak, VmHWM) after the storm. Goal <= 150 MB.

Both subscribers run as their own processes so neither shares the publisher's GIL.
`python bench/bench_gateway.py [--quick]`.
"""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._table import markdown, row  # noqa: E402
from harness.acks import AckTally  # noqa: E402
from harness.config_files import to_toml  # noqa: E402
from harness.mosquitto import Broker, free_port  # noqa: E402
from protocol import topics  # noqa: E402
from protocol.events import Event, new_event_id, sign_event  # noqa: E402
from protocol.registry import Registry, Signer  # noqa: E402

SITE = "HN-01"
RAW_SITE = "HN-02"  # the raw reference's copy of the burst: same bytes, topic not ours
RAW_CLIENT = "bench-raw"
EPOCH = 1  # the simulated units' outbox epoch: the gateway acks per (device, epoch)


def broker_conf(port: int, workdir: Path) -> str:
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    return (
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {workdir}/data/",
                "autosave_interval 60",
                "max_queued_messages 0",
                "max_inflight_messages 1000",
                "user root" if os.geteuid() == 0 else "",
                f"log_dest file {workdir}/mosquitto.log",
            ]
        )
        + "\n"
    )


def new_broker(workdir: Path) -> Broker:
    port = free_port()
    return Broker(
        workdir / "broker", conf_text=broker_conf(port, workdir / "broker"), port=port
    ).start()


def make_site(workdir: Path, devices: int) -> tuple[dict[str, SigningKey], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    registry = Registry()
    keys = {f"d{i:03d}": SigningKey.generate() for i in range(devices)}
    for dev, key in keys.items():
        registry.add(Signer(dev, SITE, "device", bytes(key.verify_key), "lane-1"))
    gw_key = SigningKey.generate()
    registry.add(Signer("gw-a", SITE, "gateway", bytes(gw_key.verify_key)))
    registry.save(workdir / "registry.json")
    (workdir / "gw.key").write_text(bytes(gw_key).hex())
    return keys, workdir / "registry.json"


def gateway_keys(workdir: Path) -> dict[str, bytes]:
    """The keys a unit of this site pins: the gateway's (make_site wrote its seed)."""
    seed = bytes.fromhex((workdir / "gw.key").read_text().strip())
    return {"gw-a": bytes(SigningKey(seed).verify_key)}


def signed_events(
    keys: dict[str, SigningKey], per_device: int, first_seq: int = 1
) -> list[tuple[str, bytes]]:
    out = []
    for seq in range(first_seq, first_seq + per_device):
        for dev, key in keys.items():
            event = Event(
                eid=new_event_id(),
                typ="scan",
                dev=dev,
                site=SITE,
                seq=seq,
                ep=EPOCH,
                t_ms=int(time.time() * 1000),
                clock="synced",
                verdict="pass",
                reason="ok",
                lane="lane-1",
                ref=os.urandom(16),
                sub=os.urandom(16),
                kind="declaration",
            )
            out.append((dev, sign_event(event, key)))
    return out


def publish_all(broker: Broker, events: list[tuple[str, bytes]], site: str = SITE) -> float:
    """Publish QoS 1 as fast as paho allows; returns the start time. `site` only changes the
    topic (same length), so the raw reference can get the same bytes without the gateway."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    start = time.time()
    # paho's message ids are 16-bit: never have more than 30,000 unconfirmed at once, or a
    # wrapped id collides with one still queued (the full storm publishes 100,000)
    for i in range(0, len(events), 30_000):
        chunk = events[i : i + 30_000]
        infos = [client.publish(topics.event_topic(site, dev), raw, qos=1) for dev, raw in chunk]
        for info in infos:
            info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    return start


RECEIVE_MAXIMUM = 2000  # both subscribers: the broker may have this many unacked in flight
SESSION_EXPIRY_S = 7 * 86400  # the gateway's default


def gateway_config(workdir: Path, broker: Broker, registry: Path) -> Path:
    data = {
        "id": "gw-a",
        "site": SITE,
        "state_dir": str(workdir / "state"),
        "signing_key_file": str(workdir / "gw.key"),
        "registry_file": str(registry),
        "root_public_keys": [bytes(SigningKey.generate().verify_key).hex()],
        "mqtt": {"host": broker.host, "port": broker.port, "receive_maximum": RECEIVE_MAXIMUM},
    }
    path = workdir / "gateway.toml"
    path.write_text(to_toml(data))
    return path


def start_gateway(config: Path, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "gateway.log").open("ab"),
    )


def start_raw(broker: Broker, n: int, out: Path, site: str = SITE) -> subprocess.Popen:
    """A bare paho QoS 1 subscriber (paho acks in its network thread as each message
    arrives), with the gateway's session settings, in its own process."""
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--raw-subscriber",
            broker.host,
            str(broker.port),
            str(n),
            str(out),
            site,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def raw_subscriber(host: str, port: int, n: int, out: Path, site: str = SITE) -> None:
    seen = 0
    done = threading.Event()
    first = [0.0]

    def on_message(client, userdata, msg):
        nonlocal seen
        if not first[0]:
            first[0] = time.time()
        seen += 1
        if seen >= n:
            done.set()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topics.site_device_filter(site, "event"), qos=1)
        Path(str(out) + ".ready").write_text("1")

    # the same protocol and session as the gateway (MQTT 5 persistent session, receive
    # maximum), so the two differ only in what happens to each message
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"{RAW_CLIENT}-{site}", protocol=mqtt.MQTTv5
    )
    client.on_message = on_message
    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(host, port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(600)
    Path(out).write_text(json.dumps({"last": time.time(), "first": first[0], "seen": seen}))
    client.loop_stop()
    client.disconnect()


def wait_file(path: Path, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return json.loads(path.read_text())
        time.sleep(0.02)
    raise TimeoutError(path)


def count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(DISTINCT eid) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


class AckWatcher:
    """End-to-end acks as the devices see them: signed by the gateway key (protocol/ack.py),
    counted per (device, epoch) by harness.acks.AckTally."""

    def __init__(self, broker: Broker, gateway_keys: dict[str, bytes]) -> None:
        self.tally = AckTally(gateway_keys)
        self.last = 0.0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-acks")
        self.client.on_message = self._on
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.site_device_filter(SITE, "ack"), qos=1)
        self.client.loop_start()

    def _on(self, client, userdata, msg) -> None:
        if self.tally.add(msg.payload):
            self.last = time.time()

    def wait(self, devices: list[str], seq: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.tally.acked_upto(d, EPOCH) >= seq for d in devices):
                return self.last
            time.sleep(0.02)
        raise TimeoutError(f"acks ({self.tally.refused} refused)")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_gateway_ready(db: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]:
                    time.sleep(0.5)
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gateway did not start")


def peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of the gateway plus its child processes (the verifier process)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    total = 0.0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def live_burst(workdir: Path, quick: bool, rounds: int = 3) -> list[dict]:
    """Interleaved rounds (raw, gateway, gateway, raw, ...), best of `rounds` each.

    Both are fed by the same publisher with the same signed bytes; the raw reference's copy
    goes to a sibling site's topics (same length) that the gateway does not subscribe to, so
    the gateway stays connected (warm) and neither sees the other's traffic. A warm-up burst
    goes through both first.
    """
    per_device = 500 if quick else 2000
    keys, registry = make_site(workdir, 10)
    devices = list(keys)
    n = per_device * len(devices)
    broker = new_broker(workdir)
    raw_rates: list[float] = []
    gw_rates: list[float] = []
    lost = 0
    try:
        config = gateway_config(workdir, broker, registry)
        db = workdir / "state" / "gateway.db"
        gw = start_gateway(config, workdir)
        wait_gateway_ready(db)
        watcher = AckWatcher(broker, gateway_keys(workdir))
        next_seq = 1

        def gateway_round(count: int) -> float:
            nonlocal next_seq
            start = publish_all(broker, signed_events(keys, count, next_seq))
            next_seq += count
            last_ack = watcher.wait(devices, next_seq - 1)
            return count * len(devices) / (last_ack - start)

        def raw_round(count: int) -> float:
            out = workdir / "raw.json"
            for path in (out, Path(str(out) + ".ready")):
                path.unlink(missing_ok=True)
            raw = start_raw(broker, count * len(devices), out, RAW_SITE)
            wait_file(Path(str(out) + ".ready"), 30)
            time.sleep(0.3)  # subscription settled
            start = publish_all(broker, signed_events(keys, count), RAW_SITE)
            result = wait_file(out)
            raw.wait(30)
            return result["seen"] / (result["last"] - start)

        raw_round(50)  # warm-up: both paths, broker and page cache
        gateway_round(50)
        for i in range(rounds):
            order = (raw_round, gateway_round) if i % 2 == 0 else (gateway_round, raw_round)
            for fn in order:
                (raw_rates if fn is raw_round else gw_rates).append(fn(per_device))
        lost = (next_seq - 1) * len(devices) - count(db)
        watcher.close()
        gw.terminate()
        gw.wait(20)
    finally:
        broker.stop()
    gw_rate, raw_rate = max(gw_rates), max(raw_rates)
    ratio = gw_rate / raw_rate
    runs = lambda rates: ", ".join(f"{r:,.0f}" for r in rates)  # noqa: E731
    return [
        row(
            f"gateway durable ingest, {n:,} events from 10 devices (verified, committed, acked), "
            f"best of {rounds} interleaved",
            f"{gw_rate:,.0f} ev/s ({runs(gw_rates)}), {lost} lost",
            f"{raw_rate:,.0f} msg/s ({runs(raw_rates)}) bare paho QoS 1",
            ratio,
            ">= 0.8x, zero loss",
            ratio >= 0.8 and lost == 0,
        )
    ]


def storm(workdir: Path, quick: bool) -> list[dict]:
    n_dev, per_device = (100, 50) if quick else (500, 200)
    keys, registry = make_site(workdir, n_dev)
    n = n_dev * per_device
    events = signed_events(keys, per_device)
    broker = new_broker(workdir)
    try:
        # register both persistent sessions, then go away
        out = workdir / "raw.json"
        raw = start_raw(broker, 10**9, out)
        wait_file(Path(str(out) + ".ready"), 30)
        raw.kill()
        raw.wait()
        config = gateway_config(workdir, broker, registry)
        db = workdir / "state" / "gateway.db"
        gw = start_gateway(config, workdir)
        wait_gateway_ready(db)
        gw.kill()
        gw.wait()
        publish_all(broker, events)  # queued for both sessions while they are away
        Path(str(out) + ".ready").unlink()
        start = time.time()
        raw = start_raw(broker, n, out)
        result = wait_file(out)
        raw.wait(30)
        raw_s = result["last"] - start
        start = time.time()
        gw = start_gateway(config, workdir)
        deadline = time.monotonic() + 900
        while count(db) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        gw_s = time.time() - start
        stored = count(db)
        rss = peak_rss_mb(gw.pid)
        gw.terminate()
        gw.wait(20)
    finally:
        broker.stop()
    scale = f"{n_dev} devices x {per_device} queued" + (" (quick: scaled down)" if quick else "")
    return [
        row(
            f"reconnect storm drain, {scale}",
            f"{gw_s:.1f} s ({n / gw_s:,.0f} ev/s), {n - stored} lost",
            f"{raw_s:.1f} s bare paho",
            raw_s / gw_s,
            ">= 0.8x bare, zero loss",
            raw_s / gw_s >= 0.8 and stored == n,
        ),
        row(
            "gateway peak RSS (VmHWM, incl. verifier process) after the storm",
            f"{rss:.0f} MB",
            "",
            None,
            "<= 150 MB",
            rss <= 150,
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += live_burst(Path(tmp) / "live", quick)
    with tempfile.TemporaryDirectory() as tmp:
        rows += storm(Path(tmp) / "storm", quick)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-subscriber":
        raw_subscriber(
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            Path(sys.argv[5]),
            sys.argv[6] if len(sys.argv) > 6 else SITE,
        )
    else:
        print(markdown(run(quick="--quick" in sys.argv)))
