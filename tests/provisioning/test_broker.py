"""Bundles against a real Mosquitto started from the generated site config (TLS, dynamic
security): the gateways' logins from `broker config`, the units' given by the gateway's own
login over $CONTROL, as gateway/broker_admin.py does from the registry."""

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.broker_admin import CONTROL_TOPIC, UNIT_KEY_NAME, BrokerAdmin
from harness.polling import wait_until
from harness.scan_events import signed_scan
from protocol.events import open_event
from protocol.reasons import ProtocolError, Reason
from protocol.topics import event_topic, site_device_filter
from protocol.trust import open_revocation_list
from provisioning.broker import copy_credentials
from provisioning.dynsec import CONFIG_NAME
from provisioning.home import OpsHome
from tests.provisioning.conftest import SITE, parse_json, wait_for


class Client:
    """A paho client logged in with a bundle's credentials, over TLS to the site CA."""

    def __init__(self, broker, bundle: Path, user: str, protocol=mqtt.MQTTv5, password=None):
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{user}-{time.time_ns()}",
            protocol=protocol,
        )
        self.c.tls_set(ca_certs=str(bundle / "ca.crt"))
        if password is None:
            password = (bundle / "mqtt.password").read_text().strip()
        self.c.username_pw_set(user, password)
        self.rc = None
        self.ready = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc.value)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.ready.wait(5)

    def _on_connect(self, _c, _u, _f, reason_code, _p) -> None:
        self.rc = reason_code
        self.ready.set()

    @property
    def connected(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe and wait for the broker's SUBACK: from then on, publishes reach us."""
        granted = threading.Event()
        self.c.on_subscribe = lambda *_: granted.set()
        self.c.subscribe(topic_filter, qos=1)
        assert granted.wait(5), f"no SUBACK for {topic_filter}"

    def publish(self, topic: str, payload: bytes) -> int | None:
        info = self.c.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.acks)
        return self.acks.get(info.mid)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def units(home: OpsHome):
    a = home.add_device(SITE, "hn01-lane1", broker_host="127.0.0.1")
    b = home.add_device(SITE, "hn01-lane2", lane="lane-2")
    gw = home.add_gateway(SITE, "hn01-gw")
    return a, b, gw


def unit_logins(broker) -> set[str]:
    """The unit logins the broker holds: its dynamic-security file, saved on every change."""
    held = json.loads((broker.folder / "data" / CONFIG_NAME).read_text())
    return {c["username"] for c in held["clients"]} - {"hn01-gw"}


def apply_registry(home: OpsHome, broker, gw) -> set[str]:
    """What the site gateway does with the registry: its own login (the dynsec admin role
    from `broker config`) sends the units' roles and logins. Returns the active unit ids once
    the broker holds exactly those."""
    key = bytes.fromhex((gw.folder / UNIT_KEY_NAME).read_text().strip())
    registry = home.registry().for_site(SITE)
    active = {s.id for s in registry if s.role == "device" and not s.revoked}
    gateway = Client(broker, gw.folder, gw.gateway_id)
    try:
        assert gateway.connected
        commands = BrokerAdmin(SITE, key, print).commands(registry, full=True)
        assert gateway.publish(CONTROL_TOPIC, json.dumps({"commands": commands}).encode()) == 0
        wait_until(lambda: unit_logins(broker) == active, 5, message="the broker to hold the units")
        return active
    finally:
        gateway.close()


@pytest.fixture
def live_broker(home, units, site_broker):
    """The site broker from its generated config, with the registry's units applied."""
    broker = site_broker()
    assert apply_registry(home, broker, units[2]) == {units[0].device_id, units[1].device_id}
    return broker


def test_device_publishes_own_events_gateway_verifies(home, units, live_broker) -> None:
    a, _b, gw = units
    broker = live_broker
    gateway = Client(broker, gw.folder, gw.gateway_id)
    device = Client(broker, a.folder, a.device_id)
    assert gateway.connected and device.connected
    gateway.subscribe(site_device_filter(SITE, "event"))
    signed = signed_scan(a.folder / "device.key", a.device_id, SITE, 1)
    assert device.publish(event_topic(SITE, a.device_id), signed) == 0
    assert wait_for(lambda: gateway.messages)
    topic, payload = gateway.messages[0]
    assert topic == event_topic(SITE, a.device_id)
    registry = home.registry()
    assert open_event(payload, registry.key_for).event.dev == a.device_id
    device.close()
    gateway.close()


def test_other_device_cannot_publish_as_a(home, units, live_broker) -> None:
    a, b, gw = units
    broker = live_broker
    gateway = Client(broker, gw.folder, gw.gateway_id)
    gateway.subscribe(site_device_filter(SITE, "event"))
    # MQTT 5: mosquitto 2.0.11 answers the QoS 1 publish with PUBACK 135 "not authorized"
    intruder = Client(broker, b.folder, b.device_id)
    assert intruder.publish(event_topic(SITE, a.device_id), b"forged") == 135
    # MQTT 3.1.1: the publish is acknowledged but silently dropped; the gateway sees nothing
    old = Client(broker, b.folder, b.device_id, protocol=mqtt.MQTTv311)
    assert old.connected
    old.publish(event_topic(SITE, a.device_id), b"forged-311")
    # ...while its own topic still flows, so "nothing" above is not a dead subscription
    old.publish(event_topic(SITE, b.device_id), b"own")
    # MQTT keeps one client's publishes in order: a forged one let through would be first
    assert wait_for(lambda: len(gateway.messages) >= 1)
    assert [t for t, _ in gateway.messages] == [event_topic(SITE, b.device_id)]
    # a device cannot read another device's acks or write the site's trust list
    assert intruder.publish(f"chot/v1/{SITE}/trust", b"x") == 135
    for c in (intruder, old, gateway):
        c.close()


def test_anonymous_and_wrong_password_refused(units, live_broker) -> None:
    a, _b, _gw = units
    broker = live_broker
    wrong = Client(broker, a.folder, a.device_id, password="not-the-password")
    assert not wrong.connected
    wrong.close()
    anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    anon.tls_set(ca_certs=str(a.folder / "ca.crt"))
    result = {}
    anon.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
    anon.connect(broker.host, broker.port)
    anon.loop_start()
    assert wait_for(lambda: "rc" in result)
    assert result["rc"].is_failure
    anon.loop_stop()


def test_revoked_device_is_locked_out_everywhere(home, units, live_broker) -> None:
    a, b, gw = units
    broker = live_broker
    ok = Client(broker, a.folder, a.device_id)
    assert ok.connected
    signed_before = signed_scan(a.folder / "device.key", a.device_id, SITE, 1)
    home.revoke_device(a.device_id)
    assert apply_registry(home, broker, gw) == {b.device_id}  # the gateway deletes a's login
    assert wait_for(lambda: not ok.c.is_connected()), "the revoked unit's connection stays"
    ok.close()
    copy_credentials(home, SITE, broker.folder)  # `broker config` again keeps the units
    held = json.loads((broker.folder / "data" / CONFIG_NAME).read_text())
    assert b.device_id in {c["username"] for c in held["clients"]}
    refused = Client(broker, a.folder, a.device_id)
    assert not refused.connected
    refused.close()
    still = Client(broker, b.folder, b.device_id)
    assert still.connected
    still.close()
    registry = home.registry()
    assert registry.is_revoked(a.device_id) and registry.key_for(a.device_id) is None
    with pytest.raises(ProtocolError) as err:
        open_event(signed_before, registry.key_for)
    assert err.value.reason is Reason.UNKNOWN_DEVICE
    revocations = open_revocation_list(home.revocation_list_bytes(), home.root_keyring())
    assert a.device_id in revocations.devices
    # and after a full restart too (persistence kept)
    broker.restart()
    again = Client(broker, a.folder, a.device_id)
    assert not again.connected
    again.close()


def test_broker_check_command(home, run_cli) -> None:
    code, out = run_cli("provision", "broker", "check", "--home", home.path, SITE, "--json")
    report = parse_json(out)
    assert code == 0 and report["ok"] is True
    assert set(report["checks"]) == {
        "device_connects_tls",
        "device_publishes_own_event",
        "other_device_denied",
        "other_site_denied",
        "anonymous_refused",
        "wrong_password_refused",
    }


def test_broker_config_contents(home, units, tmp_path, run_cli) -> None:
    _a, _b, gw = units
    out = tmp_path / "etc"
    code, _printed = run_cli(
        "provision",
        "broker",
        "config",
        "--home",
        home.path,
        SITE,
        "--out",
        out,
        "--install-dir",
        "/etc/mosquitto/chot",
        "--json",
    )
    assert code == 0
    conf = (out / "mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "per_listener_settings false",
        "persistence true",
        "autosave_interval 300",
        "max_queued_messages 100000",
        # logins and ACLs in the dynamic-security plugin, Debian arm64's by default (a Pi)
        "plugin /usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
        "plugin_opt_config_file /etc/mosquitto/chot/data/dynamic-security.json",
        "certfile /etc/mosquitto/chot/server.crt",
        "listener 8883 0.0.0.0",
        "max_queued_bytes 134217728",
    ):
        assert line in conf.splitlines(), line
    lines = conf.splitlines()
    assert lines.index("use_username_as_clientid true") > lines.index("listener 8883 0.0.0.0")
    assert not [x for x in lines if x.startswith(("password_file", "acl_file"))]
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    # the starting file: the gateway, with the site's tree and the dynsec admin role; no unit
    path = out / "data" / CONFIG_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    start = json.loads(path.read_text())
    assert [c["username"] for c in start["clients"]] == [gw.gateway_id]
    assert {r["rolename"] for r in start["clients"][0]["roles"]} == {
        "chot-gateway",
        "chot-dynsec-admin",
    }
    # a rerun keeps the broker's key and certificate and the units the broker holds, and
    # updates the rest (issue #15)
    key, cert = (out / "server.key").read_bytes(), (out / "server.crt").read_bytes()
    unit = {"username": "hn01-lane1", "roles": [{"rolename": "chot-unit-hn01-lane1"}]}
    start["clients"].append(unit)
    start["roles"].append({"rolename": "chot-unit-hn01-lane1", "acls": []})
    path.write_text(json.dumps(start))
    code, _ = run_cli(
        "provision", "broker", "config", "--home", home.path, SITE, "--out", out, "--arch", "amd64"
    )
    assert code == 0
    assert (out / "server.key").read_bytes() == key and (out / "server.crt").read_bytes() == cert
    again = json.loads(path.read_text())
    assert [c["username"] for c in again["clients"]] == [gw.gateway_id, "hn01-lane1"]
    plugin = "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
    assert plugin in (out / "mosquitto.conf").read_text().splitlines()
