"""The unit checks its SUBACKs against a real Mosquitto whose ACL refuses its ack topic.

A refused ack (and config) subscription is logged with its filter; the unit publishes its events
once and does not republish them every ack timeout (no ack can ever come); once the ACL grants
the ack topic the unit asks again, republishes what is unacknowledged and drains its outbox.

Mosquitto's ``acl_file`` grants every subscription in the SUBACK and only filters delivery, so
this broker uses the dynamic-security plugin: its subscribe ACLs answer "Not authorized" in the
SUBACK, and its ``$CONTROL`` topic lets the test fix the ACL while everything runs.
"""

import base64
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt

from device.app import DeviceApp
from device.gpio import SimulatedBackend
from device.uplink import MqttOptions
from protocol import topics
from provisioning.dynsec import DEFAULT_ACL_ACCESS
from tests.support.device_pipeline import (
    Pki,
    QueueSource,
    TestGateway,
    device_public_key,
    write_device,
)

DEV, SITE = "hn01-lane1", "HN-01"
# shipped in Debian's mosquitto package, under the multiarch folder
DYNSEC_PLUGIN = next(Path("/usr/lib").glob("**/mosquitto_dynamic_security.so"), None)
CONTROL = "$CONTROL/dynamic-security/v1"
ACK = topics.ack_topic(SITE, DEV)
CONFIG = topics.config_topic(SITE, DEV)


def _client(username: str, password: str, role: str) -> dict:
    """A dynsec client entry: PBKDF2-SHA512 of the password, as mosquitto_ctrl writes it."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {
        "username": username,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": 101,
        "roles": [{"rolename": role}],
    }


def _acl(acltype: str, topic: str) -> dict:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def dynsec_config(passwords: dict[str, str]) -> dict:
    """The unit may publish its own topics and read the site's documents (trust, revocations,
    DCC trust, recent passes), but neither its ack nor its config topic; the gateway may do
    anything; admin drives $CONTROL."""
    device_acls = [
        _acl("publishClientSend", f"chot/v1/{SITE}/dev/{DEV}/{leaf}")
        for leaf in ("event", "status", "heartbeat")
    ] + [
        _acl("subscribeLiteral", topics.trust_topic(SITE)),
        _acl("subscribeLiteral", topics.revocations_topic(SITE)),
        _acl("subscribeLiteral", topics.dcc_trust_topic(SITE)),
        _acl("subscribeLiteral", topics.recent_topic(SITE)),
    ]
    return {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": [
            _client(DEV, passwords[DEV], "device"),
            _client("gateway", passwords["gateway"], "gateway"),
            _client("admin", passwords["admin"], "admin"),
        ],
        "groups": [],
        "roles": [
            {"rolename": "device", "acls": device_acls},
            {
                "rolename": "gateway",
                "acls": [_acl("publishClientSend", "#"), _acl("subscribePattern", "#")],
            },
            {"rolename": "admin", "acls": [_acl("publishClientSend", "$CONTROL/#")]},
        ],
    }


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def grant_ack_topic(host: str, port: int, password: str) -> None:
    """What an operator fixing the ACL does: allow the unit to subscribe to its ack topic."""
    admin = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="admin", protocol=mqtt.MQTTv5)
    admin.username_pw_set("admin", password)
    admin.connect(host, port)
    admin.loop_start()
    try:
        command = {"command": "addRoleACL", "rolename": "device", **_acl("subscribeLiteral", ACK)}
        admin.publish(CONTROL, json.dumps({"commands": [command]}), qos=1).wait_for_publish(5)
    finally:
        admin.disconnect()
        admin.loop_stop()


def test_refused_ack_topic_is_logged_and_not_republished_until_granted(
    tmp_path, mosquitto, monkeypatch, caplog
):
    assert DYNSEC_PLUGIN is not None, "mosquitto's dynamic-security plugin is not installed"
    caplog.set_level(logging.INFO, logger="device.uplink")
    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    monkeypatch.delenv("CHOT_MQTT_PASSWORD", raising=False)
    passwords = {DEV: "dev-pw", "gateway": "gw-pw", "admin": "admin-pw"}
    dynsec = tmp_path / "dynsec.json"
    dynsec.write_text(json.dumps(dynsec_config(passwords)))
    broker = mosquitto(
        extra_conf=f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {dynsec}",
    )
    pki = Pki()
    unit = tmp_path / "unit"
    config = write_device(
        unit, pki, port=broker.port, password=passwords[DEV], mqtt={"ack_timeout_s": 1}
    )
    gateway = TestGateway(
        broker.host, broker.port, SITE, {DEV: device_public_key(unit)}, passwords["gateway"]
    )
    source = QueueSource()
    app = DeviceApp(config, source=source, backend=SimulatedBackend(), connect=False)
    app.start_uplink(replace(MqttOptions.from_config(config.mqtt), resubscribe_s=1.0))
    loop = threading.Thread(target=app.run_for, kwargs={"seconds": 60}, daemon=True)
    loop.start()
    try:
        uplink = app.uplink
        assert uplink is not None
        assert wait_for(lambda: uplink.refused_filters == {ACK, CONFIG}), uplink.refused_filters
        for i in range(5):
            source.put(pki.make_pass(i))
        assert gateway.wait(lambda g: len(g.events) == 5)

        # several ack timeouts (1 s) and refused re-asks (every 1 s) later: sent once, kept
        time.sleep(3.5)
        assert uplink.refused_filters == {ACK, CONFIG}
        assert gateway.duplicates == 0 and uplink.stats["republished"] == 0
        assert app.outbox.depth == 5 and app.outbox.acked_seq == 0
        refusals = [r.getMessage() for r in caplog.records if "refused subscription" in r.message]
        assert len(refusals) == 2, refusals  # one line per filter, not one per re-ask
        assert any(ACK in line and "no gateway acks" in line for line in refusals)
        assert any(CONFIG in line for line in refusals)

        # the ACL is fixed: the unit re-asks, is granted, republishes and is acknowledged
        grant_ack_topic(broker.host, broker.port, passwords["admin"])
        assert wait_for(lambda: app.outbox.depth == 0 and app.outbox.acked_seq == 5)
        assert uplink.refused_filters == {CONFIG}
        assert gateway.duplicates >= 1 and sorted(gateway.arrivals) == [1, 2, 3, 4, 5]
        assert any(f"subscription {ACK} granted" in r.getMessage() for r in caplog.records)
    finally:
        app.request_stop()
        loop.join(10)
        app.close()
        gateway.close()
