"""Test helpers for the gateway: a provisioned site (keys, registry, config), simulated scanner
publishers (real paho clients signing real events) and a gateway subprocess.

`wait_for` is `harness.polling.wait_until` under the name the gateway tests import."""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from harness.config_files import to_toml
from harness.polling import wait_until
from protocol import cbor, cose, topics
from protocol.events import Event, new_event_id, sign_event
from protocol.registry import Registry, Signer

SITE = "HN-01"
EPOCH = 1  # the simulated scanners' outbox epoch: the gateway acks per (device, epoch)
USERS = {"gw": "gw-pass", "gw2": "gw2-pass", "dev": "dev-pass"}
ACL = """user gw
topic readwrite chot/v1/#
user gw2
topic readwrite chot/v1/#
user dev
topic write chot/v1/+/dev/+/event
topic write chot/v1/+/dev/+/status
topic write chot/v1/+/dev/+/heartbeat
topic read chot/v1/+/dev/+/ack
topic read chot/v1/+/trust
"""
ROOT = Path(__file__).resolve().parents[2]
wait_for = wait_until  # the name the gateway tests import


def make_event(
    key: SigningKey,
    dev: str,
    seq: int,
    *,
    site: str = SITE,
    lane: str = "lane-1",
    reason: str = "ok",
    eid: bytes | None = None,
    ep: int | None = EPOCH,
    verdict: str | None = None,
) -> tuple[bytes, Event]:
    """A scan event signed with `key`: a pass for reason "ok", else a fail, unless `verdict`
    says otherwise; fresh random pass reference and subject."""
    event = Event(
        ep=ep,
        eid=eid or new_event_id(),
        typ="scan",
        dev=dev,
        site=site,
        seq=seq,
        t_ms=int(time.time() * 1000),
        clock="synced",
        verdict=verdict or ("pass" if reason == "ok" else "fail"),
        reason=reason,
        lane=lane,
        ref=os.urandom(16),
        sub=os.urandom(16),
        kind="declaration",
    )
    return sign_event(event, key), event


@dataclass
class Site:
    """Keys, registry and configs for one test site; devices d01..dNN."""

    dir: Path
    devices: int = 3
    root: SigningKey = field(default_factory=SigningKey.generate)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, self.devices + 1):
            self.add_device(f"d{i:02d}", lane=f"lane-{1 + i % 2}")
        for gw in ("gw-a", "gw-b"):
            key = SigningKey.generate()
            self.keys[gw] = key
            (self.dir / f"{gw}.key").write_text(bytes(key).hex() + "\n")
            self.registry.add(Signer(gw, SITE, "gateway", bytes(key.verify_key)))
        (self.dir / "mqtt.password").write_text(USERS["gw"])
        (self.dir / "mqtt2.password").write_text(USERS["gw2"])
        (self.dir / "central.token").write_text("tok-a")
        (self.dir / "central2.token").write_text("tok-b")
        self.save_registry()

    def add_device(self, dev: str, *, lane: str = "lane-1", revoked: bool = False) -> SigningKey:
        key = SigningKey.generate()
        self.keys[dev] = key
        self.registry.add(Signer(dev, SITE, "device", bytes(key.verify_key), lane, revoked))
        return key

    def save_registry(self) -> None:
        self.registry.save(self.dir / "registry.json")

    def key_for(self, dev: str) -> bytes | None:
        return self.registry.key_for(dev)

    def config(
        self,
        broker,
        *,
        gw: str = "gw-a",
        central_url: str | None = None,
        shared_group: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        second = gw == "gw-b"
        data: dict[str, Any] = {
            "id": gw,
            "site": SITE,
            "state_dir": str(self.dir / f"state-{gw}"),
            "signing_key_file": str(self.dir / f"{gw}.key"),
            "registry_file": str(self.dir / "registry.json"),
            "root_public_keys": [bytes(self.root.verify_key).hex()],
            "registry_check_s": 0.5,
            "lanes": {"lane-1": 10, "lane-2": 10},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": "gw2" if second else "gw",
                "password_file": str(self.dir / ("mqtt2.password" if second else "mqtt.password")),
            },
            "central": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "idle_poll_s": 0.2},
            "store": {"batch_ms": 20},
        }
        if central_url:
            data["central"]["url"] = central_url
            data["central"]["token_file"] = str(
                self.dir / ("central2.token" if second else "central.token")
            )
        if shared_group:
            data["mqtt"]["shared_group"] = shared_group
        for key, value in overrides.items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        return data

    def write_config(self, data: dict[str, Any], name: str = "gateway.toml") -> Path:
        path = self.dir / name
        path.write_text(to_toml(data))
        return path


class Scanner:
    """A simulated scanner's uplink: publishes signed events QoS 1, records end-to-end acks
    (signed, protocol/ack.py; read here without checking the key: an observer, not a unit):
    `acks[dev]` is the highest seq with every seq up to it named by some ack."""

    def __init__(self, broker, name: str = "sim") -> None:
        self.acks: dict[str, int] = {}
        self.acked: dict[str, set[int]] = {}
        self.ack_count = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set("dev", USERS["dev"])
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.site_device_filter(SITE, "ack"), qos=1)
        self.client.loop_start()

    def _on_ack(self, client, userdata, msg) -> None:
        parsed = topics.parse_device_topic(msg.topic)
        ack = cbor.loads_strict(cose.parse_sign1(bytes(msg.payload)).payload)
        named = [(1, ack["upto"]), *ack.get("rng", [])]
        with self._lock:
            self.ack_count += 1
            seqs = self.acked.setdefault(parsed.device, set())
            for lo, hi in named:
                seqs.update(range(lo, hi + 1))
            n = self.acks.get(parsed.device, 0)
            while n + 1 in seqs:
                n += 1
            self.acks[parsed.device] = n

    def named(self, dev: str) -> set[int]:
        """Every seq of `dev` some ack named so far."""
        with self._lock:
            return set(self.acked.get(dev, ()))

    def wait_quiet(self, quiet_s: float, timeout: float = 30) -> None:
        """Until no ack has arrived for `quiet_s` (the gateway has caught up)."""
        last = [self.ack_count, time.monotonic()]

        def quiet() -> bool:
            if self.ack_count != last[0]:
                last[:] = [self.ack_count, time.monotonic()]
            return time.monotonic() - last[1] >= quiet_s

        wait_until(quiet, timeout, message="the gateway's acks to stop")

    def publish(self, dev: str, payload: bytes, *, topic_dev: str | None = None) -> None:
        info = self.client.publish(topics.event_topic(SITE, topic_dev or dev), payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS

    def raw(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    def wait_acks(self, expected: dict[str, int], timeout: float = 20) -> dict[str, int]:
        """The acks seen once each device's ack reached `expected`."""

        def reached() -> bool:
            with self._lock:
                return all(self.acks.get(d, 0) >= n for d, n in expected.items())

        def seen() -> str:
            with self._lock:
                named = {d: (min(v), len(v)) for d, v in self.acked.items() if v}
            return f"acks {expected} (got {self.acks}; lowest, count named: {named})"

        wait_until(reached, timeout, message=seen)
        with self._lock:
            return dict(self.acks)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class TopicReader:
    """Records the last payload seen on each topic under a filter (retained ones included)."""

    def __init__(self, broker, topic_filters: list[str], name: str = "reader") -> None:
        self.seen: dict[str, bytes] = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}"
        )
        self.client.username_pw_set("gw2", USERS["gw2"])
        self.client.on_message = lambda c, u, m: self.seen.__setitem__(m.topic, m.payload)
        self.client.connect(broker.host, broker.port)
        for topic_filter in topic_filters:
            self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_gateways_online(broker, gateways: list[str], timeout: float = 20) -> bool:
    """True once each gateway's retained status says "online": a gateway publishes that only
    after the broker granted its subscriptions, so events published from then on reach it."""
    reader = TopicReader(
        broker, [topics.gateway_status_topic(SITE, gw) for gw in gateways], "watch"
    )
    wanted = {topics.gateway_status_topic(SITE, gw) for gw in gateways}

    def all_online() -> bool:
        seen = dict(reader.seen)
        return all(t in seen and json.loads(seen[t]).get("state") == "online" for t in wanted)

    try:
        return wait_until(all_online, timeout, message=f"gateways {gateways} online")
    finally:
        reader.close()


def start_gateway_process(config_path: Path, log_path: Path) -> subprocess.Popen:
    """The gateway as a real process (what systemd runs), so tests can kill -9 it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "run", "--config", str(config_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("ab"),
        start_new_session=True,
    )
