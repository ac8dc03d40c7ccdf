"""Security through the provisioned deployment: the broker's TLS, passwords and ACL, the
gateway's signature checks, the units' rollback refusal and the status page's login.

Each property is unit-tested in its own package; here it is proved once, briefly, on the real
site as `chot provision` generated it.
"""

import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from device.config import load_signing_key
from harness.e2e.device_proc import outbox_state
from harness.e2e.passes import make_scans
from harness.e2e.rounds import Round, ScanPool
from harness.e2e.site import SITE, E2ESite
from harness.mosquitto import TlsFiles
from harness.polling import wait_until
from protocol import topics
from protocol.events import Event, new_event_id, sign_event
from provisioning import tls
from provisioning.broker import write_broker_config, write_local_config

NOT_AUTHORIZED = 135
# The probes log in with logins of their own: the broker ties the client id to the login
# (use_username_as_clientid), so a probe using a live unit's or the gateway's login would
# replace that client's session, and paho's reconnects could make them kick each other.
PROBE_UNIT = "demo-lane5"  # a fifth provisioned unit nobody runs
PROBE_GATEWAY = "demo-gwprobe"  # a second gateway login: whoever may write the trust topic


@pytest.fixture(scope="module")
def security_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2ESite, ScanPool]]:
    """Four scanning units, plus a unit and a gateway provisioned only for the probes."""
    site = E2ESite(tmp_path_factory.mktemp("security"), devices=5)
    site.devices = site.devices[:4]
    try:
        home = site.site.home
        home.add_gateway(
            SITE,
            PROBE_GATEWAY,
            out=site.workdir / "probe-gateway",
            central_url=f"http://127.0.0.1:{site.site.central_port}",
        )
        write_broker_config(home, SITE, site.site.broker_conf.parent)
        write_local_config(site.site.broker_conf.parent, site.site.broker_port)
        pool = ScanPool(make_scans(site.site, [200] * 4, now=site.now))
        site.start()
        yield site, pool
    finally:
        site.close()


class Probe:
    """A paho client logging in like a unit would, recording what the broker answers."""

    def __init__(
        self,
        site: E2ESite,
        user: str | None,
        password: str | None,
        *,
        ca: Path | None = None,
        tls: bool = True,
        port: int | None = None,
    ) -> None:
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.reason: object = None
        self.messages: list[str] = []
        self.suback: list[int] = []
        self.puback: list[int] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"probe-{time.monotonic_ns()}",
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            ca = ca or site.site.broker_conf.parent / "ca.crt"
            self.client.tls_set(
                ca_certs=str(ca) if ca.exists() else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append(m.topic)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.suback.extend(
            int(rc.value) for rc in codes
        )
        self.client.on_publish = lambda c, u, mid, rc, p: self.puback.append(int(rc.value))
        self.error: Exception | None = None
        try:
            self.client.connect("127.0.0.1", port or site.site.broker_port, keepalive=10)
            self.client.loop_start()
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
            self.answered.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        if not reason_code.is_failure:
            self.connected.set()
        self.answered.set()

    def accepted(self, timeout: float = 3.0) -> bool:
        self.answered.wait(timeout)
        return self.connected.is_set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _password(folder: Path) -> str:
    return (folder / "mqtt.password").read_text().strip()


def test_logins_refused_without_password_or_site_ca(security_site, tmp_path, mosquitto) -> None:
    site, _ = security_site
    probe_unit = site.site.device_configs[4].parent
    password = _password(probe_unit)
    good = Probe(site, PROBE_UNIT, password)
    assert good.accepted(), "a unit's own credentials must work (else the test proves nothing)"
    good.close()
    refused = [
        Probe(site, None, None),  # anonymous
        Probe(site, PROBE_UNIT, "not-the-password"),
        Probe(site, "demo-lane2", password),  # the probe unit's password for lane 2
        Probe(site, PROBE_UNIT, password, tls=False),  # no TLS at all
    ]
    for probe in refused:
        assert not probe.accepted()
        probe.close()
    # another site's CA: the real broker's certificate is not one it trusts
    other = tmp_path / "other-site"
    other.mkdir()
    tls.create_ca(other, "OTHER-01")
    tls.create_server_cert(other, other, ["127.0.0.1"])
    stranger = Probe(site, PROBE_UNIT, password, ca=other / "ca.crt")
    assert not stranger.accepted() and isinstance(stranger.error, ssl.SSLError)
    # and the other way round: an impostor broker with a certificate from that other CA
    # (everyone's password accepted) gets nothing from a client holding the site CA
    impostor = mosquitto(
        "impostor", tls=TlsFiles(other / "ca.crt", other / "server.crt", other / "server.key")
    )
    fooled = Probe(site, PROBE_UNIT, password, port=impostor.port)
    assert not fooled.accepted() and isinstance(fooled.error, ssl.SSLError)


def test_acl_keeps_units_in_their_own_topics(security_site) -> None:
    site, pool = security_site
    probe_unit = site.site.device_configs[4].parent
    probe = Probe(site, PROBE_UNIT, _password(probe_unit))
    assert probe.accepted()
    try:
        # reading another unit's acks and config, and any unit's events
        probe.client.subscribe(
            [
                (topics.ack_topic(SITE, "demo-lane2"), 1),
                (topics.config_topic(SITE, "demo-lane2"), 1),
                (topics.event_topic(SITE, "demo-lane2"), 1),
            ]
        )
        # publishing as another unit
        key = load_signing_key(probe_unit / "device.key")
        event = Event(
            eid=new_event_id(),
            typ="scan",
            dev=PROBE_UNIT,
            site=SITE,
            seq=1,
            t_ms=int(time.time() * 1000),
            clock="synced",
            verdict="pass",
            reason="ok",
        )
        info = probe.client.publish(
            topics.event_topic(SITE, "demo-lane2"), sign_event(event, key), qos=1
        )
        info.wait_for_publish(5)
        # lane 2 scans meanwhile: the gateway acks it on its ack topic
        rnd = Round(site, pool.take(20), 40.0).start()
        rnd.finish()
        lane2 = site.devices[1]
        wait_until(
            lambda: outbox_state(lane2.outbox)["acked_seq"] == site.device_seq(lane2),
            15,
            message="lane 2 to receive the gateway's ack of its last decision",
        )
        assert probe.messages == [], f"the probe unit read {probe.messages[:3]}"
        assert probe.puback == [NOT_AUTHORIZED]
        rejects = site.gateway_status()["rejects"]
        assert "topic_mismatch" not in rejects, "the broker let the publish through"
    finally:
        probe.close()


def test_event_forged_in_another_units_name_is_rejected(security_site) -> None:
    site, _ = security_site
    probe_unit = site.site.device_configs[4].parent
    key = load_signing_key(probe_unit / "device.key")  # a valid unit key, but not lane 2's
    forged = Event(
        eid=new_event_id(),
        typ="scan",
        dev="demo-lane2",
        site=SITE,
        seq=10**6,
        t_ms=int(time.time() * 1000),
        clock="synced",
        verdict="pass",
        reason="ok",
    )
    before = site.gateway_status()["rejects"].get("bad_signature", 0)
    probe = Probe(site, PROBE_UNIT, _password(probe_unit))
    assert probe.accepted()
    try:
        # the probe unit's own topic (the only one the ACL lets it use), lane 2's name in it
        probe.client.publish(
            topics.event_topic(SITE, PROBE_UNIT), sign_event(forged, key), qos=1
        ).wait_for_publish(5)
    finally:
        probe.close()
    wait_until(
        lambda: site.gateway_status()["rejects"].get("bad_signature", 0) > before,
        15,
        message="the gateway to count the forged event as bad_signature",
    )
    assert not site.central_fetch(f"SELECT eid FROM events WHERE eid = x'{forged.eid.hex()}'")
    assert site.central_fetch(f"SELECT eid FROM events WHERE seq = {10**6}") == []


def test_old_trust_list_replayed_is_refused(security_site) -> None:
    site, _ = security_site
    home = site.site.home
    old = home.trust_list_bytes()
    old_version = home.state.trust_version
    newer = home.sign_trust_list()
    gw_docs = site.site.gateway_config.parent / "documents"
    (gw_docs / "trust.cose").write_bytes(newer)  # the gateway publishes it (retained)

    def versions() -> dict[str, int | None]:
        rows = site.gateway_query("SELECT dev, heartbeat FROM devices WHERE heartbeat IS NOT NULL")
        return {dev: json.loads(hb).get("trust_version") for dev, hb in rows}

    def heartbeat_ms(unit: str) -> int:
        """When the gateway received the unit's last heartbeat (Unix ms; 0: none yet)."""
        rows = site.gateway_query("SELECT heartbeat_ms FROM devices WHERE dev = ?", (unit,))
        return (rows[0][0] or 0) if rows else 0

    units = [d.id for d in site.devices]
    wait_until(
        lambda: all(versions().get(u) == old_version + 1 for u in units),
        30,
        message="every unit to adopt the new trust list",
    )
    # whoever may write the trust topic: a gateway login, not the running gateway's own
    probe = Probe(site, PROBE_GATEWAY, _password(site.workdir / "probe-gateway"))
    assert probe.accepted()
    try:
        probe.client.publish(topics.trust_topic(SITE), old, qos=1, retain=True).wait_for_publish(5)
        logs = [site.workdir / "logs" / f"{u}.log" for u in units]
        wait_until(
            lambda: all("trust refused" in p.read_text() for p in logs),
            15,
            message="every unit to refuse the replayed list",
        )
        assert all("rollback" in p.read_text() for p in logs)
        # heartbeats sent after the replay (heartbeat_s = 1) still carry the newer version
        refused_ms = int(time.time() * 1000)
        wait_until(
            lambda: all(heartbeat_ms(u) > refused_ms + 1000 for u in units),
            15,
            message="a heartbeat from every unit sent after the replay",
        )
        assert all(versions()[u] == old_version + 1 for u in units)
        probe.client.publish(topics.trust_topic(SITE), newer, qos=1, retain=True).wait_for_publish(
            5
        )
    finally:
        probe.close()


def test_status_page_refuses_writes_without_login(security_site) -> None:
    site, _ = security_site
    base = site.site.web_url  # HTTPS, certificate from the site CA
    ca = ssl.create_default_context(cafile=site.site.web_ca)
    wait_until(
        lambda: _status("GET", f"{base}/login", verify=ca) == 200, 15, message="the status page"
    )
    form = {"category": "paper", "doc4": "1234", "lane": "lane-1"}
    for path in ("/manual", "/logout"):
        assert _status("POST", base + path, data=form, verify=ca) in (401, 403, 303), path
    assert _status("GET", f"{base}/api/status", verify=ca) in (401, 403, 303)
    assert site.gateway_query("SELECT COUNT(*) FROM manual_entries") == [(0,)]


def _status(method: str, url: str, **kwargs) -> int:
    try:
        return httpx.request(method, url, timeout=5, follow_redirects=False, **kwargs).status_code
    except httpx.HTTPError:
        return 0
