"""The gateway's one MQTT 5 session with the site broker.

Persistent (fixed client id, `clean_start=False`, session expiry), bounded (receive maximum,
maximum packet size), with a retained status topic whose last will is "offline". "online" is
published only once the broker granted the subscriptions: before that an event published by a
scanner is not sure to reach us (a fresh session holds nothing). Messages go to
`Ingest.on_message`; PUBACKs are sent by ingest after the commit (`manual_ack=True`).
"""

import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import GatewayConfig, read_secret
from gateway.ingest import Ingest
from protocol import topics
from protocol.status import encode_status

log = logging.getLogger(__name__)

MAX_PACKET_BYTES = 64 * 1024  # an event (4 KiB), its topic and properties, with room to spare


class MqttSession:
    """The paho client, its connect/subscribe/disconnect callbacks and the gateway status.

    `on_connected` runs on every (re)connect once the subscriptions are asked for (republish
    the retained documents, ...) and returns how many documents it republished, for the log.
    """

    def __init__(
        self,
        config: GatewayConfig,
        ingest: Ingest,
        on_connected: Callable[[], int],
        *,
        stopping: threading.Event,
        connected: threading.Event,
        ready: threading.Event,
    ) -> None:
        self.config = config
        self.ingest = ingest
        self.on_connected = on_connected
        # the app's events, read by its health and run loop
        self.stopping = stopping
        self.connected = connected
        self.ready = ready  # set once the broker granted our subscriptions
        self._subscribe_mid: int | None = None
        self.client = self._build_client()
        ingest.client = self.client

    def _build_client(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if c.mqtt.username:
            client.username_pw_set(c.mqtt.username, read_secret(c.mqtt.password_file))
        if c.mqtt.ca_file:
            client.tls_set(
                ca_certs=str(c.mqtt.ca_file),
                certfile=str(c.mqtt.cert_file) if c.mqtt.cert_file else None,
                keyfile=str(c.mqtt.key_file) if c.mqtt.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        status = topics.gateway_status_topic(c.site, c.id)
        client.will_set(status, encode_status("offline", 0), qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self.ingest.on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.mqtt.session_expiry_s
        props.ReceiveMaximum = self.config.mqtt.receive_maximum
        # the broker must not send us anything bigger (it drops it for us): an event is at
        # most MAX_EVENT_BYTES, so a unit's huge heartbeat never reaches this process
        props.MaximumPacketSize = MAX_PACKET_BYTES
        return props

    def start(self) -> None:
        """Connect in paho's network thread (it reconnects on its own)."""
        c = self.config.mqtt
        self.client.connect_async(
            c.host,
            c.port,
            keepalive=c.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Say "stopped" (when connected), then disconnect."""
        try:
            if self.connected.is_set():
                self.publish_status("stopped").wait_for_publish(2)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho network thread ---------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.error("broker refused the connection: %s", reason_code)
                return
            self.ingest.new_connection()
            _, self._subscribe_mid = client.subscribe(
                self.ingest.subscriptions(self.config.mqtt.shared_group)
            )
            n = self.on_connected()
            self.connected.set()
            log.info(
                "connected to broker (session present=%s), republished %d documents",
                flags.session_present,
                n,
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        """The gateway says "online" only once the broker granted its subscriptions."""
        if mid != self._subscribe_mid:
            return
        filters = self.ingest.subscriptions(self.config.mqtt.shared_group)
        refused = [
            f for (f, _), rc in zip(filters, reason_code_list, strict=False) if rc.is_failure
        ]
        for topic_filter in refused:
            log.error("broker refused subscription %s (check the broker ACL)", topic_filter)
        self.publish_status("online")
        self.ready.set()
        log.info("subscribed to %d topic filters", len(filters) - len(refused))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.ready.clear()
        if not self.stopping.is_set():
            log.warning("disconnected from broker: %s; paho reconnects", reason_code)

    # --- publishing ------------------------------------------------------------------------

    def publish_retained(self, topic: str, raw: bytes) -> None:
        self.client.publish(topic, raw, qos=1, retain=True)

    def publish_control(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        topic = topics.gateway_status_topic(self.config.site, self.config.id)
        payload = encode_status(state, int(time.time()))
        return self.client.publish(topic, payload, qos=1, retain=True)
