"""MQTT link from a scanner to its site broker: events out, acks and signed documents in.

MQTT 5 rather than 3.1.1: a persistent session with a *bounded* lifetime (session expiry, so a
retired unit does not make the broker queue its acks forever), reason codes on CONNACK, SUBACK
and PUBACK (an ACL refusal is visible instead of silently dropped), and shared subscriptions on
the gateway side (``$share/...``) so two gateways can split a site's events.

Delivery: the outbox row is written first; ``publish`` only hands a copy to the broker (QoS 1,
PUBACK marks the row ``sent``). A row leaves the outbox only on the gateway's end-to-end ack,
a COSE_Sign1 by a pinned gateway key naming this device, the outbox's epoch and the seqs
(protocol/ack.py); an ack that is unsigned, signed by another key, for another epoch or for a
seq this unit has not sent is refused and counted (``stats["acks_refused"]``). A signed ack
from a synchronised gateway also bounds the unit's clock (``on_gateway_time``): every
heartbeat carries the epoch and a nonce ``hb``, which the gateway echoes in its ack. The v1
JSON ack is refused like any unsigned one; a unit pins at least one gateway key (its config
refuses to load without). At most ``window`` events are published beyond the last ack; after a reconnect,
or when no ack progress is seen for ``ack_timeout_s``, everything not acknowledged is
published again in seq order (the gateway removes duplicates by event id). Nothing is
published while disconnected: paho would queue it and report success, which is not delivery.
A refused ack subscription (SUBACK) is logged and stops the ack-timeout republishing, since no
ack can come; refused filters are asked for again every ``resubscribe_s``.

Threads: paho's network thread runs the callbacks (each wrapped so one bad message cannot stop
it); one ``pump`` thread publishes outbox rows and heartbeats. The scan loop only calls
``kick()``, which never blocks.
"""

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.outbox import Outbox
from protocol import topics
from protocol.ack import AckError, open_ack
from protocol.clock import GatewayTime
from protocol.status import Heartbeat, encode_heartbeat, encode_status

if TYPE_CHECKING:
    from device.config import MqttSection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # TLS when set
    cert_file: Path | None = None  # optional client certificate
    key_file: Path | None = None
    keepalive_s: int = 30
    heartbeat_s: float = 15.0
    session_expiry_s: int = 7 * 24 * 3600  # a unit may be switched off over a long weekend
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    window: int = 64  # events published beyond the last gateway ack
    ack_timeout_s: float = 15.0
    resubscribe_s: float = 300.0  # ask again for filters the broker refused (ACL fixed since)

    @classmethod
    def from_config(cls, m: "MqttSection") -> "MqttOptions":
        """The ``[mqtt]`` config section, with the password read from where it is kept."""
        return cls(
            host=m.host,
            port=m.port,
            username=m.username,
            password=m.password(),
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            keepalive_s=m.keepalive_s,
            heartbeat_s=m.heartbeat_s,
            session_expiry_s=m.session_expiry_s,
            reconnect_max_s=m.reconnect_max_s,
            window=m.window,
            ack_timeout_s=m.ack_timeout_s,
        )


class Uplink:
    """Owns the paho client. ``on_document(kind, payload)`` receives trust/revocations/dcc-trust/
    config payloads (the caller verifies them); ``health()`` returns the heartbeat JSON fields."""

    def __init__(
        self,
        options: MqttOptions,
        device_id: str,
        site: str,
        outbox: Outbox,
        *,
        on_document: Callable[[str, bytes], None],
        health: Callable[[], dict[str, Any]],
        gateway_keys: Mapping[str, bytes] | None = None,
        on_gateway_time: Callable[[GatewayTime], None] | None = None,
    ) -> None:
        self.options = options
        self.gateway_keys = dict(gateway_keys or {})
        self._on_gateway_time = on_gateway_time
        if not self.gateway_keys:
            log.error(
                "device %s: no gateway key pinned: every ack is refused, nothing leaves the "
                "outbox ([trust] gateway_public_keys)",
                device_id,
            )
        self.device_id = device_id
        self.site = site
        self.outbox = outbox
        self._on_document = on_document
        self._health = health
        self._event_topic = topics.event_topic(site, device_id)
        self._status_topic = topics.status_topic(site, device_id)
        self._heartbeat_topic = topics.heartbeat_topic(site, device_id)
        self._documents = {
            topics.trust_topic(site): "trust",
            topics.revocations_topic(site): "revocations",
            topics.dcc_trust_topic(site): "dcc-trust",
            topics.config_topic(site, device_id): "config",
            topics.recent_topic(site): "recent",  # the site's accepted passes (not a document)
        }
        self._ack_topic = topics.ack_topic(site, device_id)

        self._cond = threading.Condition()
        self._connected = False
        self._stopping = False
        self._rewind = True  # publish everything not acknowledged from the start
        self._published_to = 0  # highest seq handed to the broker on this connection
        self._last_progress = time.monotonic()
        self._disconnected_since: float | None = time.monotonic()
        self._mids: dict[int, int] = {}  # paho mid -> seq, to mark rows sent on PUBACK
        self._broker_has = 0  # highest seq PUBACKed (QoS 1 acks come in order)
        self._marked_sent = 0
        self._sent_max = 0  # highest seq handed to the broker by this process
        self._mono_of_seq: dict[int, float] = {}  # seq -> when first published (clock bound)
        self._heartbeats: dict[int, float] = {}  # nonce -> when sent (the last few)
        self._fresh_from = outbox.last_seq  # seqs above were created by this process
        self._subscribe_requests: dict[int, list[str]] = {}  # paho mid -> filters asked for
        self._refused: set[str] = set()  # filters the broker's last SUBACK refused
        self._resubscribe_at = float("inf")
        self._last_heartbeat = float("-inf")
        self.stats = {
            "published": 0,
            "republished": 0,
            "acks": 0,
            "acks_refused": 0,
            "callback_errors": 0,
            "connects": 0,
            "documents": 0,
        }
        self.client = self._make_client()
        self._pump = threading.Thread(target=self._pump_loop, name="uplink-pump", daemon=True)

    # -- setup ------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        o = self.options
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5
        )
        if o.username:
            client.username_pw_set(o.username, o.password)
        if o.ca_file:
            client.tls_set(
                ca_certs=str(o.ca_file),
                certfile=str(o.cert_file) if o.cert_file else None,
                keyfile=str(o.key_file) if o.key_file else None,
            )
        client.will_set(self._status_topic, self._status("offline"), qos=1, retain=True)
        # Per-unit jitter on paho's exponential backoff: after a broker restart the units of a
        # site do not all knock at the same instant.
        jitter = random.uniform(0.5, 1.5)
        client.reconnect_delay_set(
            min_delay=o.reconnect_min_s * jitter, max_delay=o.reconnect_max_s * jitter
        )
        client.max_inflight_messages_set(max(20, o.window))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.options.session_expiry_s
        self.client.connect_async(
            self.options.host,
            self.options.port,
            keepalive=self.options.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._pump.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Clean exit: retained status "stopped", then a normal DISCONNECT (no last will)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._pump.is_alive():
            self._pump.join(timeout)
        if self._connected:
            info = self.client.publish(self._status_topic, self._status("stopped"), 1, True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("device %s: could not publish stopped status: %s", self.device_id, exc)
        self.client.disconnect()
        self.client.loop_stop()

    def kick(self) -> None:
        """New outbox rows exist: wake the pump. Never blocks on the network."""
        with self._cond:
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def refused_filters(self) -> frozenset[str]:
        """Topic filters the broker refused to this unit (its ACL), until a SUBACK grants them."""
        with self._cond:
            return frozenset(self._refused)

    def offline_for(self) -> float:
        """Seconds since the link went down (or since start when never up); 0 when up."""
        since = self._disconnected_since
        return 0.0 if since is None else time.monotonic() - since

    def _status(self, state: str) -> bytes:
        """Retained availability (protocol/status.py); the last will carries t=0."""
        return encode_status(state, 0 if state == "offline" else int(time.time()))

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("device %s: broker refused connection: %s", self.device_id, reason_code)
            return
        try:
            client.publish(self._status_topic, self._status("online"), qos=1, retain=True)
            with self._cond:
                self._subscribe_requests.clear()  # SUBACKs of the last connection never come
            self._subscribe([self._ack_topic, *self._documents])
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("device %s: on_connect failed", self.device_id)
        log.info("device %s: connected (session present %s)", self.device_id, flags.session_present)
        with self._cond:
            self._connected = True
            self._disconnected_since = None
            self._rewind = True
            self._mids.clear()
            self.stats["connects"] += 1
            self._cond.notify_all()

    def _subscribe(self, filters: list[str]) -> None:
        """Ask for ``filters`` at QoS 1; ``_on_subscribe`` reads the broker's answer."""
        with self._cond:  # held so the SUBACK cannot be handled before its mid is recorded
            result, mid = self.client.subscribe(
                [(f, mqtt.SubscribeOptions(qos=1)) for f in filters]
            )
            if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._subscribe_requests[mid] = filters

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        """Check every filter's SUBACK reason code, as the gateway does. Refused filters are
        logged and asked for again every ``resubscribe_s``. While the ack topic is refused no
        gateway ack can arrive, so the ack timeout does not republish (it would loop forever):
        events go out once per connection and stay in the outbox."""
        try:
            with self._cond:
                filters = self._subscribe_requests.pop(mid, None)
                if filters is None:
                    return
                for topic_filter, rc in zip(filters, reason_code_list, strict=False):
                    if rc.is_failure:
                        self._note_refused(topic_filter, rc)
                    elif topic_filter in self._refused:
                        self._refused.discard(topic_filter)
                        log.info("device %s: subscription %s granted", self.device_id, topic_filter)
                        if topic_filter == self._ack_topic:
                            self._rewind = True  # acks can come now: publish what is unacked
                            self._cond.notify_all()
                now = time.monotonic()
                self._resubscribe_at = (
                    now + self.options.resubscribe_s if self._refused else float("inf")
                )
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("device %s: on_subscribe failed", self.device_id)

    def _note_refused(self, topic_filter: str, reason_code: object) -> None:
        """Called with ``_cond`` held."""
        if topic_filter in self._refused:
            return  # logged when first refused; still refused on retry
        self._refused.add(topic_filter)
        consequence = (
            "no gateway acks: events stay in the outbox and are not republished on ack timeout"
            if topic_filter == self._ack_topic
            else "no document updates"
        )
        log.error(
            "device %s: broker refused subscription %s: %s (%s; check the broker ACL)",
            self.device_id,
            topic_filter,
            reason_code,
            consequence,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            if self._connected:
                self._disconnected_since = time.monotonic()
            self._connected = False
        if not self._stopping:
            log.warning("device %s: disconnected: %s", self.device_id, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        try:
            with self._cond:
                seq = self._mids.pop(mid, None)
                if seq is None:
                    return
                if reason_code.is_failure:
                    log.warning(
                        "device %s: broker refused event seq %d: %s",
                        self.device_id,
                        seq,
                        reason_code,
                    )
                    return
                self._broker_has = max(self._broker_has, seq)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("device %s: on_publish failed", self.device_id)

    def _on_message(self, client, userdata, message) -> None:
        try:
            if message.topic == self._ack_topic:
                self._handle_ack(message.payload)
            elif message.topic in self._documents and message.payload:
                # (an empty retained message only clears the topic: nothing to verify)
                self.stats["documents"] += 1
                self._on_document(self._documents[message.topic], bytes(message.payload))
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("device %s: message on %s failed", self.device_id, message.topic)

    def _handle_ack(self, payload: bytes) -> None:
        """Verify the ack (pinned gateway key, this device, this outbox epoch, seqs sent) and
        note it; the pump deletes the rows (keeps disk I/O off paho's network thread)."""
        received = time.monotonic()
        try:  # no pinned key (refused by device/config.py anyway): every ack is wrong_key
            ack = open_ack(payload, self.gateway_keys, self.device_id, self.outbox.epoch)
            with self._cond:
                if ack.highest() > self._sent_max:
                    raise AckError("not_sent", f"names seq {ack.highest()} > {self._sent_max}")
        except AckError as exc:
            with self._cond:
                self.stats["acks_refused"] += 1
            log.warning("device %s: ack refused: %s", self.device_id, exc)
            return
        before = self.outbox.acked_seq
        self.outbox.note_ack(ack.upto, [(r.lo, r.hi) for r in ack.ranges])
        # Progress is the contiguous ack point moving: acks that only name later seqs, or a
        # heartbeat's ack, must not hold off the republish of a hole the broker lost
        progressed = self.outbox.acked_seq > before
        with self._cond:
            self.stats["acks"] += 1
            sent = self._heartbeats.get(ack.hb) if ack.hb is not None else None
            top = ack.highest()
            if top and top in self._mono_of_seq:
                seq_sent = self._mono_of_seq[top]
                sent = seq_sent if sent is None else max(sent, seq_sent)
            if progressed:
                self._last_progress = time.monotonic()
            self._cond.notify_all()
        if sent is not None and self._on_gateway_time is not None:
            self._on_gateway_time(GatewayTime(ack.t_ms, ack.sync, sent, received))

    # -- pump thread ------------------------------------------------------------------------

    def _pump_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(0.2)
                if self._stopping:
                    return
                connected = self._connected
            try:
                self._apply_acks()
                if connected:
                    self._publish_window()
                    self._maybe_resubscribe()
                    self._maybe_heartbeat()
            except Exception:
                self.stats["callback_errors"] += 1
                log.exception("device %s: publishing failed", self.device_id)

    def _apply_acks(self) -> None:
        """The group commit and the batched settle of acks and sent marks (outbox.py)."""
        self.outbox.maybe_sync()
        with self._cond:
            broker_has = self._broker_has
        if broker_has > self._marked_sent:
            self.outbox.mark_sent_through(broker_has)
            self._marked_sent = broker_has
        self.outbox.settle()

    def _publish_window(self) -> None:
        acked = self.outbox.acked_seq
        now = time.monotonic()
        with self._cond:
            outstanding = self._published_to > acked
            acks_refused = self._ack_topic in self._refused
            if (
                outstanding
                and not acks_refused
                and now - self._last_progress > self.options.ack_timeout_s
            ):
                log.warning(
                    "device %s: no ack beyond seq %d for %.0f s, republishing",
                    self.device_id,
                    acked,
                    now - self._last_progress,
                )
                self._rewind = True
            if self._rewind:
                self._rewind = False
                if outstanding:
                    self.stats["republished"] += self._published_to - acked
                self._published_to = acked
            start = max(self._published_to, acked)
        room = acked + self.options.window - start
        if room <= 0:
            return
        for row in self.outbox.pending(after_seq=start, limit=room):
            if not self._connected:
                return  # paho would queue it and call it a success: wait for the reconnect
            info = self.client.publish(self._event_topic, row.signed, qos=1)
            with self._cond:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self._rewind = True  # paho may have queued it; we republish anyway
                    return
                self._mids[info.mid] = row.seq
                if self._published_to <= self.outbox.acked_seq:
                    self._last_progress = time.monotonic()  # the ack clock starts now
                self._published_to = row.seq
                if row.seq > self._sent_max:
                    self._sent_max = row.seq
                    if row.seq > self._fresh_from:  # no ack for it can predate this process
                        self._mono_of_seq[row.seq] = time.monotonic()
                    while len(self._mono_of_seq) > 4 * self.options.window:
                        self._mono_of_seq.pop(next(iter(self._mono_of_seq)))
                self.stats["published"] += 1

    def _maybe_resubscribe(self) -> None:
        with self._cond:
            if time.monotonic() < self._resubscribe_at:
                return
            self._resubscribe_at = float("inf")  # until the SUBACK of this request
            filters = sorted(self._refused)
        if filters:
            self._subscribe(filters)

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < self.options.heartbeat_s:
            return
        self._last_heartbeat = now
        with self._cond:
            nonce = 1 + secrets.randbelow(2**53 - 1)  # random: an old ack cannot match it
            self._heartbeats[nonce] = now
            while len(self._heartbeats) > 8:
                self._heartbeats.pop(next(iter(self._heartbeats)))
        heartbeat = Heartbeat(t=int(time.time()), **self._health(), ep=self.outbox.epoch, hb=nonce)
        self.client.publish(self._heartbeat_topic, encode_heartbeat(heartbeat), qos=0)
