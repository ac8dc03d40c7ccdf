"""A stolen unit (issue #13): every hostile message of the issue in one run, against the real
provisioned site (Mosquitto with the provisioned config, the gateway process, the centre on
PostgreSQL), while four honest units scan.

The attacker holds a fifth provisioned unit's key and MQTT login and works from this test
process (paho + protocol.events.sign_event): out-of-range signed events, an event the centre
refuses, 7,500 sequence gaps, unsigned acks on ack topics, malformed heartbeats and a flood of
256 KB ones, the gateway's and another unit's client id; and on the status page: 60
concurrent wrong logins from one address, plain HTTP, many live-feed connections from one
session. Throughout, the operator (from 127.0.0.2) polls the page and /api/status: every
answer must be 200. At the end every honest decision is at the centre exactly once, and the
hostile inputs are counted on the gateway's /metrics with their reasons.
"""

import dataclasses
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from chot.system import OPERATOR
from device.config import load_signing_key
from harness.e2e.passes import make_scans
from harness.e2e.rounds import Round
from harness.e2e.site import SITE, E2ESite
from harness.polling import wait_until
from protocol import topics
from protocol.events import Event, new_event_id, sign_event
from tests.support.postgres import create_database, drop_database

STOLEN = "demo-lane5"
GAPS = 7_500  # seq 1, 3, 5, ...: each event past a gap
NOT_AUTHORIZED = 135
FLOOD_S = 3.0


@pytest.fixture
def stolen_site(tmp_path: Path) -> Iterator[E2ESite]:
    url = create_database("chot_e2e_stolen")
    site = E2ESite(tmp_path / "site", devices=5, central_store=url)
    site.devices = site.devices[:4]  # the fifth unit's bundle is in the attacker's hands
    try:
        yield site
    finally:
        site.close()
        drop_database(url)


# --- the operator, watching the page throughout -----------------------------------------------


def login(web: httpx.Client, password: str, user: str = OPERATOR) -> int:
    page = web.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    answer = web.post("/login", data={"user": user, "csrf": token.group(1), "password": password})
    return answer.status_code


def web_client(site: E2ESite, local: str = "127.0.0.1") -> httpx.Client:
    trust = ssl.create_default_context(cafile=site.site.web_ca)
    transport = httpx.HTTPTransport(verify=trust, local_address=local)
    return httpx.Client(base_url=site.site.web_url, timeout=15, transport=transport)


@dataclass
class Watcher:
    """The operator at 127.0.0.2: the page and /api/status, every 0.2 s, counting answers."""

    site: E2ESite
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with web_client(self.site, "127.0.0.2") as web:
            assert login(web, self.site.site.operator_password) in (200, 303)
            while not self.stop.is_set():
                for path in ("/", "/api/status"):
                    try:
                        code = web.get(path).status_code
                    except httpx.HTTPError as exc:
                        code = 0
                        self.failures.append(f"{path}: {exc!r}")
                    self.answers[str(code)] += 1
                    if code != 200:
                        self.failures.append(f"{path}: {code}")
                self.stop.wait(0.2)


# --- the attacker over MQTT --------------------------------------------------------------------


class Attacker:
    """The stolen unit's login and key, from this process."""

    def __init__(self, site: E2ESite, client_id: str = "stolen") -> None:
        folder = site.site.workdir / "devices" / STOLEN
        self.password = (folder / "mqtt.password").read_text().strip()
        self.key = load_signing_key(folder / "device.key")
        self.site = site
        self.puback: dict[int, int] = {}
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=client_id
        )
        self.client.username_pw_set(STOLEN, self.password)
        self.client.tls_set(
            ca_certs=str(site.site.broker_conf.parent / "ca.crt"),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.on_publish = lambda c, u, mid, rc, p: self.puback.__setitem__(mid, rc.value)
        self.client.connect("127.0.0.1", site.site.broker_port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "the stolen login must work (else this proves nothing)"

    def event(self, seq: int, **fields) -> bytes:
        event = Event(
            eid=new_event_id(),
            typ="scan",
            dev=STOLEN,
            site=SITE,
            seq=seq,
            t_ms=int(time.time() * 1000),
            clock="synced",
            verdict="pass",
            reason="ok",
            lane="lane-5",
        )
        return sign_event(dataclasses.replace(event, **fields), self.key)

    def publish(self, leaf_or_topic: str, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        topic = leaf_or_topic if "/" in leaf_or_topic else _own(leaf_or_topic)
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _own(leaf: str) -> str:
    return getattr(topics, f"{leaf}_topic")(SITE, STOLEN)


def metrics(site: E2ESite) -> dict[str, float]:
    """The gateway's /metrics (no login: the probes router), as {series: value}."""
    trust = ssl.create_default_context(cafile=site.site.web_ca)
    text = httpx.get(f"{site.site.web_url}/metrics", verify=trust, timeout=10).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def series(values: dict[str, float], family: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in values.items() if k.startswith(family) and all(w in k for w in want))


# --- the run ------------------------------------------------------------------------------------


def test_stolen_unit_attacks_while_four_units_scan(stolen_site: E2ESite) -> None:
    site = stolen_site
    pool = make_scans(site.site, [240] * 4, now=site.now)
    site.start()
    watcher = Watcher(site)
    watching = threading.Thread(target=watcher.run, name="operator", daemon=True)
    watching.start()
    rnd = Round(site, pool, rate=8.0).start()  # 30 s of scanning at every unit
    attacker = Attacker(site)
    sent: Counter[str] = Counter()
    try:
        # 1. 7,500 sequence gaps: seq 1, 3, 5, ...
        infos = [attacker.publish("event", attacker.event(2 * i + 1)) for i in range(GAPS)]
        for info in infos:
            info.wait_for_publish(60)
        sent["gap_events"] = GAPS
        # 2. signed events no store can hold, and values out of the contract's range
        poisons = [
            attacker.event(2**63),
            attacker.event(100_001, t_ms=2**63),
            attacker.event(100_002, tlv=2**63),
            attacker.event(100_003, dec_us=2**31),
            attacker.event(100_004, extra={"x": "y" * 3000}),
        ]
        # 3. a good event the centre must refuse (30 days ahead of its clock); one more gap
        ahead = attacker.event(2 * GAPS + 1, t_ms=int(time.time() * 1000) + 30 * 86_400_000)
        for payload in [*poisons, ahead]:
            attacker.publish("event", payload).wait_for_publish(10)
        sent["events_out_of_range"] = len(poisons)
        sent["events_centre_refuses"] = 1
        # 4. unsigned and forged acks: the ACL lets a unit write no ack topic at all
        acks = [
            attacker.publish(topics.ack_topic(SITE, dev), payload)
            for dev in (STOLEN, "demo-lane1")
            for payload in (json.dumps({"seq": 10**6}).encode(), b"\xa1\x63seq\x1a\x00\x0f\x42\x40")
        ]
        for info in acks:
            info.wait_for_publish(10)
        sent["acks"] = len(acks)
        # 5. web: 60 concurrent wrong logins from 127.0.0.1, the operator from 127.0.0.2
        login_codes = web_burst(site)
        sent["wrong_logins"] = 60
        with web_client(site, "127.0.0.2") as operator:
            assert login(operator, site.site.operator_password) in (200, 303)
            assert operator.get("/api/status").status_code == 200
        # 6. malformed heartbeats: over-long, wrong types, invalid JSON
        bad_beats = [
            b"{" + b'"x": 1, ' * 20_000 + b"}",
            json.dumps({"state": 5, "ep": "x", "hb": [], "outbox": -1}).encode(),
            json.dumps({"trust_version": 10**30, "cpu": float("inf")})
            .replace("Infinity", "1e999")
            .encode(),
            b"{not json",
            b"\xff\xfe",
        ]
        for payload in bad_beats:
            attacker.publish("heartbeat", payload, qos=1).wait_for_publish(10)
        sent["bad_heartbeats"] = len(bad_beats)
        # 7. a heartbeat flood: 256 KB payloads, QoS 0, for a few seconds
        big = b"{" + b" " * (256 * 1024) + b"}"
        flood_end = time.monotonic() + FLOOD_S
        while time.monotonic() < flood_end:
            attacker.publish("heartbeat", big, qos=0)
            sent["flood_heartbeats"] += 1
            time.sleep(0.02)
        # 8. plain HTTP to the status page's port, and many live feeds from one session
        plain = [plain_http(site, path) for path in ("/", "/login", "/api/status")]
        sent["plain_http"] = len(plain)
        feed_codes = feed_flood(site, 24)
        sent["feeds"] = len(feed_codes)
    finally:
        attacker.close()
    # 9. the gateway's client id and another unit's, with the stolen login
    for client_id in ("chot-gw-demo-gw", "demo-gw", "demo-lane1"):
        thief = Attacker(site, client_id=client_id)
        thief.close()
    sent["client_ids"] = 3

    rnd.finish(timeout=90)  # every honest decision at the centre exactly once, in order
    watcher.stop.set()
    watching.join(30)

    # the operator's page answered every time
    assert watcher.answers["200"] > 20, watcher.answers
    assert watcher.failures == [], watcher.failures[:5]
    # the web attacks got nothing
    assert not {200, 303} & set(login_codes), Counter(login_codes)
    assert Counter(login_codes)[429] >= 50, Counter(login_codes)
    assert all(code == 0 for code in plain), plain
    assert 429 in feed_codes and feed_codes.count(200) <= 24 // 4 + 1, feed_codes
    # the ACL refused every ack
    assert [attacker.puback.get(info.mid) for info in acks] == [NOT_AUTHORIZED] * len(acks)

    # the gateway counted the hostile inputs with their reasons
    def counted() -> dict[str, float] | None:
        m = metrics(site)
        ok = (
            series(m, "chot_gateway_rejects_total", reason="out_of_range") >= 4
            and series(m, "chot_gateway_rejects_total", reason="bad_heartbeat") >= 1
            and series(m, "chot_gateway_central_rejects_total", reason="out_of_range") >= 1
            and gap_ranges(site).get(STOLEN, 0) >= GAPS
        )
        return m if ok else None

    m = wait_until(counted, 60, message="the hostile inputs counted on /metrics")
    # nothing of the honest units lost, duplicated or shown as a gap
    gaps = gap_ranges(site)
    assert all(gaps.get(dev.id, 0) == 0 for dev in site.devices), gaps
    assert series(m, "chot_gateway_quarantined_total") == 0
    # the gap events are validly signed: stored once each; the one 30 days ahead refused
    stolen_rows = wait_until(
        lambda: (
            rows
            if int(
                (
                    rows := site.central_fetch(
                        f"SELECT COUNT(*) AS n FROM events WHERE dev = '{STOLEN}'"
                    )
                )[0]["n"]
            )
            >= GAPS
            else None
        ),
        60,
        message="the stolen unit's valid events at the centre",
    )
    assert int(stolen_rows[0]["n"]) == GAPS
    print(f"stolen unit: sent {dict(sent)}; operator answers {dict(watcher.answers)}")


def gap_ranges(site: E2ESite) -> dict[str, int]:
    """Open sequence gap ranges per device, from the gateway's store."""
    return dict(site.gateway_query("SELECT dev, gap_ranges FROM devices"))


def web_burst(site: E2ESite, n: int = 60) -> list[int]:
    """n concurrent wrong-password logins from one address (127.0.0.1)."""
    codes: list[int] = []
    start = threading.Barrier(n)

    def one() -> None:
        with web_client(site) as web:
            try:
                page = web.get("/login").text
                token = re.search(r'name="csrf" value="([^"]+)"', page)
                start.wait(30)
                answer = web.post(
                    "/login",
                    data={
                        "user": OPERATOR,
                        "csrf": token.group(1) if token else "",
                        "password": "not-the-password",
                    },
                )
                codes.append(answer.status_code)
            except (httpx.HTTPError, threading.BrokenBarrierError):
                codes.append(0)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return codes


def plain_http(site: E2ESite, path: str) -> int:
    """A plain-HTTP request to the HTTPS port: 0 when nothing usable came back."""
    try:
        return httpx.get(f"http://127.0.0.1:{site.site.web_port}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def feed_flood(site: E2ESite, n: int) -> list[int]:
    """n live-feed connections held open at once from one logged-in session."""
    codes: list[int] = []
    with web_client(site, "127.0.0.2") as web:
        assert login(web, site.site.operator_password) in (200, 303)
        streams = []
        try:
            for _ in range(n):
                stream = web.stream("GET", "/api/feed")
                response = stream.__enter__()
                streams.append(stream)
                codes.append(response.status_code)
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
    return codes
