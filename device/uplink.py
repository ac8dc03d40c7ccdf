"""MQTT link from a scanner to its site broker: events out, acks and signed documents in.

MQTT 5 rather than 3.1.1: a persistent session with a *bounded* lifetime (session expiry, so a
retired unit does not make the broker queue its acks forever), reason codes on CONNACK, SUBACK
and PUBACK (an ACL refusal is visible instead of silently dropped), and shared subscriptions on
the gateway side (``$share/...``) so two gateways can split a site's events.

Delivery: the outbox row is written first; ``publish`` only hands a copy to the broker (QoS 1,
PUBACK marks the row ``sent``). A row leaves the outbox only on the gateway's end-to-end ack,
checked by device/acks.py (pinned gateway key, this device, the outbox's epoch, seqs sent); a
refused ack is counted (``stats["acks_refused"]``). A signed ack from a synchronised gateway
also bounds the unit's clock (``on_gateway_time``): every heartbeat carries the epoch and a
nonce ``hb``, which the gateway echoes in its ack. At most ``window`` events are published
beyond the last ack; after a reconnect, or when the contiguous ack point has not moved for
``ack_timeout_s``, everything not acknowledged is published again in seq order (the gateway
removes duplicates by event id). Nothing is published while disconnected: paho would queue it
and report success, which is not delivery. A refused ack subscription (SUBACK,
device/subscriptions.py) is logged and stops the ack-timeout republishing, since no ack can
come; refused filters are asked for again every ``resubscribe_s``.

Threads: paho's network thread runs the callbacks (each wrapped so one bad message cannot stop
it); one ``pump`` thread publishes outbox rows and heartbeats. The scan loop only calls
``kick()``, which never blocks.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from device.acks import AckChecker
from device.mqtt_client import MqttOptions, connect_async, make_client, status_payload
from device.outbox import Outbox
from device.subscriptions import Refusal, Subscriptions
from protocol import topics
from protocol.ack import AckError
from protocol.clock import GatewayTime
from protocol.status import Heartbeat, encode_heartbeat

log = logging.getLogger(__name__)


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
        self.acks = AckChecker(
            device_id,
            outbox.epoch,
            gateway_keys or {},
            fresh_from=outbox.last_seq,
            send_times_kept=4 * options.window,
        )
        self._on_gateway_time = on_gateway_time
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
        self._subscriptions = Subscriptions(options.resubscribe_s)  # guarded by _cond
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
        client = make_client(self.options, self.device_id, self._status_topic)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        connect_async(self.client, self.options)
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
            info = self.client.publish(self._status_topic, status_payload("stopped"), 1, True)
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
            return self._subscriptions.refused

    def offline_for(self) -> float:
        """Seconds since the link went down (or since start when never up); 0 when up."""
        since = self._disconnected_since
        return 0.0 if since is None else time.monotonic() - since

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("device %s: broker refused connection: %s", self.device_id, reason_code)
            return
        try:
            client.publish(self._status_topic, status_payload("online"), qos=1, retain=True)
            with self._cond:
                self._subscriptions.new_connection()
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
                self._subscriptions.asked(mid, filters)

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        """Check every filter's SUBACK reason code, as the gateway does. Refused filters are
        logged and asked for again every ``resubscribe_s``. While the ack topic is refused no
        gateway ack can arrive, so the ack timeout does not republish (it would loop forever):
        events go out once per connection and stay in the outbox."""
        try:
            with self._cond:
                outcome = self._subscriptions.answered(mid, reason_code_list, time.monotonic())
                if outcome is None:
                    return
                for refusal in outcome.refused:
                    self._log_refused(refusal)
                for topic_filter in outcome.granted:
                    log.info("device %s: subscription %s granted", self.device_id, topic_filter)
                    if topic_filter == self._ack_topic:
                        self._rewind = True  # acks can come now: publish what is unacked
                        self._cond.notify_all()
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("device %s: on_subscribe failed", self.device_id)

    def _log_refused(self, refusal: Refusal) -> None:
        """Once per filter, when first refused: what the unit loses until the ACL is fixed."""
        consequence = (
            "no gateway acks: events stay in the outbox and are not republished on ack timeout"
            if refusal.topic_filter == self._ack_topic
            else "no document updates"
        )
        log.error(
            "device %s: broker refused subscription %s: %s (%s; check the broker ACL)",
            self.device_id,
            refusal.topic_filter,
            refusal.reason_code,
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
        """Verify the ack (device/acks.py) and note it; the pump deletes the rows (keeps disk
        I/O off paho's network thread)."""
        received = time.monotonic()
        try:
            ack = self.acks.check(payload)
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
        gateway_time = self.acks.gateway_time(ack, received)
        with self._cond:
            self.stats["acks"] += 1
            if progressed:
                self._last_progress = time.monotonic()
            self._cond.notify_all()
        if gateway_time is not None and self._on_gateway_time is not None:
            self._on_gateway_time(gateway_time)

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
            acks_refused = self._subscriptions.is_refused(self._ack_topic)
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
                self.acks.note_sent(row.seq)
                self.stats["published"] += 1

    def _maybe_resubscribe(self) -> None:
        with self._cond:
            filters = self._subscriptions.due(time.monotonic())
        if filters:
            self._subscribe(filters)

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < self.options.heartbeat_s:
            return
        self._last_heartbeat = now
        nonce = self.acks.new_heartbeat(now)  # the gateway echoes it: its ack bounds the clock
        heartbeat = Heartbeat(t=int(time.time()), **self._health(), ep=self.outbox.epoch, hb=nonce)
        self.client.publish(self._heartbeat_topic, encode_heartbeat(heartbeat), qos=0)
