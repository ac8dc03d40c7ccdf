"""Device pipeline test fixtures: a queue-fed frame source and a tiny gateway that acks
(signed with the harness gateway key the units pin, per outbox epoch).

Keys, passes and device configs are shared with the benchmarks and live in harness/; they are
re-exported here for the device tests."""

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from device.camera import Frame
from harness.device_config import GATEWAY_ID, GATEWAY_KEY, write_device
from harness.pki import Pki
from harness.polling import wait_until
from protocol import topics
from protocol.ack import Ack, sign_ack
from protocol.events import Event, open_event
from protocol.reasons import ProtocolError

__all__ = ["Pki", "QueueSource", "TestGateway", "device_public_key", "write_device"]


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
    and acks (signed, protocol/ack.py) the highest contiguous seq per device and epoch."""

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
        self.contiguous: dict[str, int] = {}  # device -> in its newest epoch
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
            seqs = {e.seq for e in self.events.values() if e.dev == event.dev and e.ep == event.ep}
            n = 0
            while n + 1 in seqs:
                n += 1
            self.contiguous[event.dev] = n
            if not self.acking or event.ep is None:
                return
        ack = Ack(GATEWAY_ID, event.dev, event.ep, n, t_ms=int(time.time() * 1000))
        client.publish(topics.ack_topic(self.site, event.dev), sign_ack(ack, GATEWAY_KEY), qos=1)

    def publish_document(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=1, retain=True).wait_for_publish(5)

    def wait(self, predicate: Callable[["TestGateway"], bool], timeout: float = 20.0) -> bool:
        """Wait until `predicate(self)` holds (checked under the lock)."""

        def holds() -> bool:
            with self.lock:
                return bool(predicate(self))

        return wait_until(
            holds,
            timeout,
            message=lambda: f"the test gateway's condition (arrivals: {self.arrivals[-10:]})",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
