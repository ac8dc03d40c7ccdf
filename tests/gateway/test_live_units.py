"""Units join and leave a live site: a real Mosquitto with the dynamic-security plugin, a real
gateway driving it from the signed registry it fetches from the real central app. A unit
published in the registry logs in with its derived password and is acked within a minute; once
revoked, its connection is cut, its login refused, and its later events refused as revoked."""

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.app import GatewayApp
from gateway.broker_admin import unit_password
from gateway.config import parse_config
from protocol import topics
from protocol.ack import open_signed_ack
from provisioning.dynsec import DEFAULT_ACL_ACCESS
from tests.central.server import serve
from tests.support.central_docs import central_app, publish_registry, run_in_thread
from tests.support.gateway_core import SITE, USERS, Scanner, Site, make_event, wait_for

DYNSEC_PLUGIN = next(Path("/usr/lib").glob("**/mosquitto_dynamic_security.so"), None)
NOW = int(time.time())


def _client(username: str, password: str, role: str) -> dict:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    b64 = base64.b64encode
    return {
        "username": username,
        "password": b64(digest).decode(),
        "salt": b64(salt).decode(),
        "iterations": 101,
        "roles": [{"rolename": role}],
    }


def _acl(acltype: str, topic: str) -> dict:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def dynsec_start() -> dict:
    """What `broker config` starts a site with: the gateway (also dynsec admin) and the test's
    simulated scanner; no unit yet."""
    everything = [
        _acl("publishClientSend", "chot/v1/#"),
        _acl("subscribePattern", "chot/v1/#"),
    ]
    return {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": [_client("gw", USERS["gw"], "gateway"), _client("dev", USERS["dev"], "sim")],
        "groups": [],
        "roles": [
            {
                "rolename": "gateway",
                "acls": [*everything, _acl("publishClientSend", "$CONTROL/dynamic-security/#")],
            },
            {"rolename": "sim", "acls": everything},
        ],
    }


class Unit:
    """A unit's MQTT login: connects with its password, publishes, hears its acks."""

    def __init__(self, broker, dev: str, password: str) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(dev, password)
        self.dev, self.broker = dev, broker
        self.connack = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.acked: list[int] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_message = self._on_ack
        self.gateway_keys: dict[str, bytes] = {}  # the site's gateway keys: acks are signed

    def _on_ack(self, client, userdata, message) -> None:
        ack = open_signed_ack(message.payload, self.gateway_keys)
        self.acked += [seq for seq in range(1, ack.highest() + 1) if ack.names(seq)]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        if not reason_code.is_failure:
            client.subscribe(topics.ack_topic(SITE, self.dev), qos=1)
            self.connected.set()

    def connect(self) -> bool:
        self.connack, self.connected = None, threading.Event()
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None, 10)
        return self.connected.is_set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site", devices=1)


def test_unit_joins_and_leaves_a_live_site(mosquitto, tmp_path, site):
    assert DYNSEC_PLUGIN is not None, "mosquitto's dynamic-security plugin is not installed"
    dynsec = tmp_path / "dynsec.json"
    dynsec.write_text(json.dumps(dynsec_start()))
    broker = mosquitto(extra_conf=f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {dynsec}")
    unit_key = secrets.token_bytes(32)
    key_file = tmp_path / "mqtt-units.key"
    key_file.write_text(unit_key.hex() + "\n")
    app_central, docs = central_app(tmp_path, site)
    with serve(app_central) as url:
        config = site.config(
            broker,
            central_url=url,
            central={"documents_poll_s": 0.5},
        )
        config["broker"] = {"dynsec": True, "unit_key_file": str(key_file)}
        app = GatewayApp(parse_config(config)).start()
        thread = run_in_thread(app)
        password = unit_password(unit_key, "d09")
        unit = Unit(broker, "d09", password)
        unit.gateway_keys = {"gw-a": bytes(site.keys["gw-a"].verify_key)}
        scanner = Scanner(broker)
        try:
            assert app.ready.wait(10)
            assert not unit.connect(), "a unit not in the registry has no login"
            unit.close()

            # ops adds the unit and publishes: it is online and acked within a minute
            key = site.add_device("d09", lane="lane-9")
            publish_registry(docs, site, version=1, issued_at=NOW, expires_at=NOW + 9999)
            started = time.monotonic()
            assert wait_for(lambda: unit.connect() or (unit.close() and False), 60)
            event = make_event(key, "d09", 1, lane="lane-9")[0]
            unit.client.publish(topics.event_topic(SITE, "d09"), event, qos=1)
            assert wait_for(lambda: 1 in unit.acked, 30)
            assert time.monotonic() - started < 60
            unit.disconnected.clear()  # set by the refused logins before
            assert "lane-9" in app.config.lanes

            # ops revokes it: the connection is cut and the login refused within a minute
            site.registry.revoke("d09")
            publish_registry(docs, site, version=2, issued_at=NOW, expires_at=NOW + 9999)
            assert unit.disconnected.wait(60)
            unit.close()
            assert not Unit(broker, "d09", password).connect()  # kicked: deleted, not dropped
            assert "lane-9" not in app.config.lanes
            # an event it signed later, carried by any other login, is refused as revoked
            scanner.publish("d09", make_event(key, "d09", 2, lane="lane-9")[0])
            assert wait_for(lambda: app.store.reject_counts().get("device_revoked", 0) >= 1, 20)
        finally:
            scanner.close()
            app.stopping.set()
            thread.join(20)
