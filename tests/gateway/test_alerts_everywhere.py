"""One alert model (gateway/web/alerts.py) everywhere an operator looks: the status page's
banners, /api/status, `chot gateway status` (JSON and words in the site's language) and
/metrics (`chot_gateway_alert{kind=...,device=...} 1`).

A real gateway (in process, real Mosquitto) whose centre does not answer, holding an expired
trust list of its own, with one scanner reporting an untrusted clock and a full outbox and
another gone offline.
"""

import json
import socket
import time
from dataclasses import asdict

import pytest

from gateway.app import GatewayApp
from gateway.web.alerts import central_unreachable
from harness.gateway_cli import gateway_status
from protocol import topics
from protocol.status import Heartbeat, encode_heartbeat
from protocol.trust import sign_trust_list
from tests.support.gateway_app import broker_of, logged_in, running_gateway
from tests.support.gateway_core import ACL, SITE, USERS, Scanner, Site, make_event, wait_for

BAD_CLOCK = Heartbeat(
    t=int(time.time()),
    state="idle",
    seq=1,
    outbox_depth=3,
    outbox_full=True,
    unrecorded=2,
    fps=9.0,
    decoder_ms=2.0,
    clock="unknown",
    trust_version=1,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app(tmp_path, mosquitto):
    broker = mosquitto(users=USERS, acl=ACL)
    with running_gateway(
        Site(tmp_path / "site", devices=2),
        broker,
        central_url=f"http://127.0.0.1:{closed_port()}",
        central={"unreachable_alert_min": 0.02},  # 1.2 s, so the test need not wait 10 min
    ) as gateway:
        yield gateway


def kinds(alerts: list[dict]) -> set[tuple[str, str | None]]:
    return {(a["kind"], a["device"]) for a in alerts}


EXPECTED = {
    ("central_unreachable", None),
    ("trust_list_expired", None),
    ("clock_unknown", "d01"),
    ("disk_low", "d01"),
    ("offline", "d02"),
}


def test_the_same_alerts_on_the_page_the_cli_and_metrics(app: GatewayApp) -> None:
    site = app.site
    now = int(time.time())
    expired = sign_trust_list(
        [], version=5, issued_at=now - 8 * 86400, expires_at=now - 60, root_key=site.root
    )
    assert app.distributor.offer(expired, actor="test").changed
    scanner = Scanner(broker_of(app))
    try:
        scanner.raw(topics.status_topic(SITE, "d01"), b'{"state":"online","t":1}')
        scanner.raw(topics.heartbeat_topic(SITE, "d01"), encode_heartbeat(BAD_CLOCK), qos=0)
        scanner.raw(topics.status_topic(SITE, "d02"), b'{"state":"offline","t":0}')
        raw, _ = make_event(site.keys["d01"], "d01", 1)
        scanner.publish("d01", raw)
        scanner.wait_acks({"d01": 1})
    finally:
        scanner.close()
    client = logged_in(app)

    def page_alerts() -> set:
        return kinds(client.get("/api/status").json()["alerts"])

    assert wait_for(lambda: page_alerts() >= EXPECTED, timeout=20), page_alerts()
    status = client.get("/api/status").json()
    levels = {(a["kind"], a["device"]): a["level"] for a in status["alerts"]}
    assert levels[("trust_list_expired", None)] == "fail"  # every pass amber: red banner
    assert levels[("offline", "d02")] == "fail"

    metrics = client.get("/metrics").text
    for kind, device in EXPECTED:
        line = f'chot_gateway_alert{{kind="{kind}",device="{device or ""}",'
        assert line in metrics, line

    # the banners people read, in the site's language (Vietnamese by default)
    page = client.get("/").text
    assert "danh sách tin cậy đã hết hạn" in page
    assert "không kết nối được trung tâm" in page
    assert "không rõ: không tin cậy được" in page  # the clock column in plain words

    report = json.loads(gateway_status(app.config_path, "--json", lang="vi").stdout)
    assert kinds(report["active_alerts"]) >= EXPECTED
    assert {"central_unreachable", "trust_list_expired"} <= set(report["alerts"])
    rows = {d["dev"]: d for d in report["devices"]}
    assert {"clock_unknown", "disk_low"} <= set(rows["d01"]["alerts"])

    vi = gateway_status(app.config_path, lang="vi").stdout
    assert "Cảnh báo:" in vi
    assert "Cổng: danh sách tin cậy đã hết hạn — mọi thẻ đều báo vàng" in vi
    assert "Máy quét d01: giờ không tin cậy — thẻ đều báo vàng" in vi
    assert "đồng hồ: không rõ: không tin cậy được" in vi
    en = gateway_status(app.config_path, lang="en").stdout
    assert "Gateway: trust list expired — every pass shows amber" in en
    assert "Gateway: centre unreachable — scans are kept here and sent later" in en
    assert "d02: offline" in en


def test_centre_unreachable_is_about_time_not_failed_attempts() -> None:
    now = 1_700_000_000_000
    url = "https://central.example"
    failing = {"failures": 50, "failing_since_ms": now - 9 * 60_000}
    assert not central_unreachable(url, failing, 0.0, now, 10)  # 50 failures, but 9 minutes
    failing["failing_since_ms"] = now - 11 * 60_000
    assert central_unreachable(url, failing, 0.0, now, 10)
    assert central_unreachable(url, None, 11 * 60.0, now, 10)  # the oldest event waited 11 min
    assert not central_unreachable(url, None, 30.0, now, 10)
    assert not central_unreachable(None, failing, 3600.0, now, 10)  # no centre configured


def test_json_keys_stay_english_identifiers(app: GatewayApp) -> None:
    report = json.loads(gateway_status(app.config_path, "--json", lang="vi").stdout)
    assert set(report) >= {"depth", "alerts", "active_alerts", "devices", "forward_lag_s"}
    for alert in report["active_alerts"]:
        assert alert["kind"].isascii() and alert["level"] in ("warn", "fail")
    assert asdict(BAD_CLOCK)["clock"] == "unknown"
