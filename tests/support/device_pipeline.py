"""Keys, passes, trust lists and device configs for the device pipeline tests."""

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from device.camera import Frame
from device.config import DeviceConfig, load_config
from protocol import topics
from protocol.events import Event, open_event
from protocol.pass_v1 import PassClaims, encode_pass
from protocol.reasons import ProtocolError
from protocol.trust import IssuerKey, sign_trust_list

DAY = 86400


@dataclass
class Pki:
    """An ops root key, one issuer key ("VN-HN") and a clock reading to issue from."""

    now: int = field(default_factory=lambda: int(time.time()))
    root: SigningKey = field(default_factory=SigningKey.generate)
    issuer: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def root_hex(self) -> str:
        return bytes(self.root.verify_key).hex()

    def trust_list(
        self,
        version: int = 1,
        issued_at: int | None = None,
        extra_keys: tuple[SigningKey, ...] = (),
    ) -> bytes:
        issued_at = self.now - 60 if issued_at is None else issued_at
        entries = [IssuerKey("VN-HN", bytes(k.verify_key)) for k in (self.issuer, *extra_keys)]
        return sign_trust_list(
            entries,
            version=version,
            issued_at=issued_at,
            expires_at=issued_at + 30 * DAY,
            root_key=self.root,
        )

    def make_pass(
        self,
        n: int = 0,
        *,
        kind: str = "declaration",
        iat: int | None = None,
        key: SigningKey | None = None,
    ) -> str:
        iat = self.now - 3600 if iat is None else iat
        claims = PassClaims(
            iss="VN-HN",
            iat=iat,
            exp=iat + 3 * DAY,
            cti=os.urandom(16),
            sub=os.urandom(16),
            kind=kind,
            name=f"Nguyen Van {n}",
            doc4="1234",
            dob=1980,
        )
        return encode_pass(claims, key or self.issuer)


def write_device(
    tmp: Path,
    pki: Pki,
    *,
    port: int = 1883,
    password: str | None = None,
    trust: bytes | None = None,
    **sections: dict[str, Any],
) -> DeviceConfig:
    """Key file (0600), bundled trust list, optional password file; returns the config."""
    tmp.mkdir(parents=True, exist_ok=True)
    key_file = tmp / "device.key"
    if not key_file.exists():
        key_file.write_text(os.urandom(32).hex())
        key_file.chmod(0o600)
    (tmp / "trust.cose").write_bytes(trust if trust is not None else pki.trust_list())
    mqtt: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "hn01-lane1",
        "heartbeat_s": 1,
        "reconnect_max_s": 2,
        "ack_timeout_s": 3,
    }
    if password is not None:
        (tmp / "mqtt.password").write_text(password)
        mqtt["password_file"] = "mqtt.password"
    data: dict[str, Any] = {
        "device": {
            "id": "hn01-lane1",
            "site": "HN-01",
            "lane": "lane-1",
            "state_dir": "state",
            "signing_key_file": "device.key",
            "offline_after_s": 1,
        },
        "trust": {"root_public_keys": [pki.root_hex], "trust_list_file": "trust.cose"},
        "policy": {"debounce_s": 0.5, "duplicate_window_s": 600},
        "mqtt": mqtt | sections.pop("mqtt", {}),
        "camera": {"source": "keyboard"},
        "decoder": {"name": "zxing"},
        "gpio": {"backend": "simulated"},
    }
    for name, values in sections.items():
        data[name] = data.get(name, {}) | values
    (tmp / "device.toml").write_text(toml_text(data))
    return load_config(tmp / "device.toml")


def toml_text(data: dict[str, dict[str, Any]]) -> str:
    """Enough TOML for a device config: tables of scalars, lists and inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(str(v))

    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in values.items()]
    return "\n".join(lines) + "\n"


def device_public_key(tmp: Path) -> bytes:
    seed = bytes.fromhex((tmp / "device.key").read_text().strip())
    return bytes(SigningKey(seed).verify_key)


class QueueSource:
    """A keyboard-wedge-like source fed by the test: text frames from a queue, empty frames
    while idle (so the app loop keeps ticking), None after ``end()``."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._index = 0

    def put(self, text: str) -> None:
        self._queue.put(text)

    def end(self) -> None:
        self._queue.put(None)

    def read(self) -> Frame | None:
        self._index += 1
        try:
            text = self._queue.get(timeout=0.05)
        except queue.Empty:
            return Frame(gray=None, t=time.monotonic(), index=self._index)
        if text is None:
            return None
        return Frame(gray=None, t=time.monotonic(), index=self._index, text=text)

    def close(self) -> None:
        pass


class TestGateway:
    """A tiny site gateway: verifies device events with open_event, keeps them by event id,
    and acks the highest contiguous seq per device, as the real gateway does."""

    __test__ = False  # not a pytest class

    def __init__(
        self, host: str, port: int, site: str, keys: dict[str, bytes], password: str
    ) -> None:
        self.site, self.keys = site, keys
        self.lock = threading.Lock()
        self.events: dict[bytes, Event] = {}  # eid -> event
        self.arrivals: list[int] = []  # seq of each first arrival, in order
        self.raw: list[bytes] = []
        self.duplicates = 0
        self.rejected: list[str] = []
        self.retained: dict[str, list[bytes]] = {}
        self.contiguous: dict[str, int] = {}
        self.acking = True  # False: store events but send no acks (a gateway that lags)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="gw-test", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set("gateway", password)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        client.subscribe(
            [
                (topics.site_device_filter(self.site, leaf), 1)
                for leaf in ("event", "status", "heartbeat")
            ]
        )

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            if not message.topic.endswith("/event"):
                self.retained.setdefault(message.topic.rsplit("/", 1)[1], []).append(
                    bytes(message.payload)
                )
                return
            try:
                event = open_event(bytes(message.payload), self.keys.get).event
            except ProtocolError as exc:
                self.rejected.append(exc.reason.value)
                return
            if event.eid in self.events:
                self.duplicates += 1
            else:
                self.events[event.eid] = event
                self.arrivals.append(event.seq)
                self.raw.append(bytes(message.payload))
            seqs = {e.seq for e in self.events.values() if e.dev == event.dev}
            n = self.contiguous.get(event.dev, 0)
            while n + 1 in seqs:
                n += 1
            self.contiguous[event.dev] = n
            if not self.acking:
                return
        client.publish(topics.ack_topic(self.site, event.dev), json.dumps({"seq": n}), qos=1)

    def publish_document(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=1, retain=True).wait_for_publish(5)

    def wait(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
