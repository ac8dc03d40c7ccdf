"""The paho client a unit connects with, and the ``[mqtt]`` options that shape it.

MQTT 5 with a persistent session of *bounded* lifetime (session expiry, so a retired unit does
not make the broker queue its acks forever), TLS when a CA is configured, a retained status
topic whose last will is "offline", and per-unit jitter on paho's reconnect backoff. What the
session does once connected (callbacks, publishing) is device/uplink.py.
"""

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.status import encode_status

if TYPE_CHECKING:
    from device.config import MqttSection


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


def status_payload(state: str) -> bytes:
    """Retained availability (protocol/status.py); the last will carries t=0."""
    return encode_status(state, 0 if state == "offline" else int(time.time()))


def make_client(options: MqttOptions, device_id: str, status_topic: str) -> mqtt.Client:
    """A paho MQTT 5 client for ``device_id``, not yet connected and without callbacks."""
    o = options
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
    )
    if o.username:
        client.username_pw_set(o.username, o.password)
    if o.ca_file:
        client.tls_set(
            ca_certs=str(o.ca_file),
            certfile=str(o.cert_file) if o.cert_file else None,
            keyfile=str(o.key_file) if o.key_file else None,
        )
    client.will_set(status_topic, status_payload("offline"), qos=1, retain=True)
    # Per-unit jitter on paho's exponential backoff: after a broker restart the units of a
    # site do not all knock at the same instant.
    jitter = random.uniform(0.5, 1.5)
    client.reconnect_delay_set(
        min_delay=o.reconnect_min_s * jitter, max_delay=o.reconnect_max_s * jitter
    )
    client.max_inflight_messages_set(max(20, o.window))
    return client


def connect_async(client: mqtt.Client, options: MqttOptions) -> None:
    """Resume the unit's persistent session (``clean_start=False``); paho retries in the
    background from ``loop_start`` on."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = options.session_expiry_s
    client.connect_async(
        options.host,
        options.port,
        keepalive=options.keepalive_s,
        clean_start=False,
        properties=props,
    )
