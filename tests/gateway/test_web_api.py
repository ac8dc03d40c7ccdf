"""Status page HTTP behaviour over a real SQLite gateway store: login, sessions, CSRF, rate
limits, manual entries (signed, audited), the JSON API, the SSE feed, /metrics, /healthz."""

import dataclasses
import re
import socket
import sqlite3
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.config import WebConfig
from gateway.health import gateway_health
from gateway.store import Rejected
from gateway.web import create_app, serve
from protocol.events import open_event
from protocol.trust import TRUST_TYPE
from provisioning.tls import create_ca, create_server_cert
from tests.support.gateway_web import DOC4, GATEWAY, OPERATOR, PASSWORD, WebSite, build_site

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def site(tmp_path: Path) -> WebSite:
    site = build_site(tmp_path / "site")
    yield site
    site.store.close()


@pytest.fixture
def client(site: WebSite) -> TestClient:
    app = create_app(site.ctx, feed_poll_s=0.05, feed_max_s=0.5, healthz_timeout_s=0.5)
    with TestClient(app) as client:
        yield client


def login(client: TestClient, user: str = OPERATOR, password: str = PASSWORD):
    form = client.get("/login")
    token = CSRF_RE.search(form.text).group(1)
    return client.post(
        "/login", data={"user": user, "password": password, "csrf": token}, follow_redirects=False
    )


def logged_in(client: TestClient) -> str:
    """Log in and return the session's CSRF token (from the status page's forms)."""
    assert login(client).status_code == 303
    return CSRF_RE.search(client.get("/").text).group(1)


def audit_actions(site: WebSite) -> list[tuple[str, str]]:
    return [(row["actor"], row["action"]) for row in site.store.audit_log()]


def test_everything_but_probes_requires_login(client: TestClient) -> None:
    for path in ("/", "/manual", "/audit"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    for path in (
        "/api/status",
        "/api/devices",
        "/api/lanes",
        "/api/decisions",
        "/api/rejects",
        "/api/gaps",
        "/api/feed",
    ):
        assert client.get(path).status_code == 401, path
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert "/api/status" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 404  # Swagger UI needs a CDN: disabled


def test_wrong_password_is_refused_and_audited(client: TestClient, site: WebSite) -> None:
    response = login(client, password="not the password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    assert "chot_session" not in client.cookies
    assert client.get("/api/status").status_code == 401
    assert (OPERATOR, "login_failed") in audit_actions(site)


def test_login_sets_a_strict_httponly_session(client: TestClient, site: WebSite) -> None:
    response = login(client)
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cookie = next(
        v
        for k, v in response.headers.multi_items()
        if k == "set-cookie" and v.startswith("chot_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP in this test; Secure when certfile is set
    assert client.get("/api/status").status_code == 200
    assert (OPERATOR, "login") in audit_actions(site)


def test_tampered_session_cookie_is_refused(client: TestClient) -> None:
    login(client)
    value = client.cookies["chot_session"]
    body, sig = value.rsplit(".", 1)
    # Replace the cookie (clear first: set() beside the server's cookie would send both)
    client.cookies.clear()
    client.cookies.set("chot_session", body + "." + ("A" if sig[0] != "A" else "B") + sig[1:])
    assert client.get("/api/status").status_code == 401


def test_login_form_needs_its_csrf_token(client: TestClient) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"user": OPERATOR, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 400
    assert "chot_session" not in client.cookies


def test_login_is_rate_limited_per_user(client: TestClient, site: WebSite) -> None:
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
    response = login(client)  # right password, but too many failures this minute
    assert response.status_code == 429
    assert "chot_session" not in client.cookies
    assert (OPERATOR, "login_rate_limited") in audit_actions(site)


def test_unauthenticated_manual_post_is_refused(client: TestClient, site: WebSite) -> None:
    response = client.post(
        "/manual", data={"category": "exempt", "lane": "lane-1"}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert site.store.event_count() == 0
    assert site.store.manual_entries() == []


def test_manual_post_without_or_with_wrong_csrf_is_refused(
    client: TestClient, site: WebSite
) -> None:
    csrf = logged_in(client)
    form = {"category": "paper_declaration", "doc4": DOC4, "lane": "lane-1"}
    assert client.post("/manual", data=form, follow_redirects=False).status_code == 403
    wrong = {**form, "csrf": csrf[:-2] + "xx"}
    assert client.post("/manual", data=wrong, follow_redirects=False).status_code == 403
    assert site.store.event_count() == 0
    assert (OPERATOR, "csrf_refused") in audit_actions(site)


def test_manual_entry_is_a_signed_gateway_event_and_audited(
    client: TestClient, site: WebSite
) -> None:
    csrf = logged_in(client)
    form = {"category": "paper_declaration", "doc4": DOC4.lower(), "lane": "lane-2", "csrf": csrf}
    response = client.post("/manual", data=form, follow_redirects=False)
    assert response.status_code == 303
    eid = re.search(r"entered=([0-9a-f]{32})", response.headers["location"]).group(1)

    [pending] = site.store.pending_batch(10)
    gateway_key = bytes(site.key.verify_key)
    verified = open_event(pending.raw, lambda dev: gateway_key if dev == GATEWAY else None)
    event = verified.event
    assert (event.eid.hex(), event.typ, event.dev, event.lane) == (eid, "manual", GATEWAY, "lane-2")
    assert event.extra == {
        "category": "paper_declaration",
        "operator": OPERATOR,
        "outcome": "admitted",
    }
    assert DOC4 not in pending.raw.decode("latin-1").upper()  # doc4 never enters the event

    [entry] = site.store.manual_entries(include_doc4=True)
    assert (entry["eid"], entry["doc4"], entry["operator"]) == (eid, DOC4, OPERATOR)
    assert (OPERATOR, "manual_entry") in audit_actions(site)
    assert DOC4 in client.get("/manual").text  # operators see it on the manual page only
    audit_page = client.get("/audit").text
    assert "manual_entry" in audit_page and "login" in audit_page


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("doc4", "12", "doc4"),
        ("doc4", "12-4", "doc4"),
        ("doc4", "", "doc4"),
        ("lane", "lane-9", "lane"),
        ("category", "vip", "category"),
    ],
)
def test_manual_entry_validation(
    client: TestClient, site: WebSite, field: str, value: str, error: str
) -> None:
    csrf = logged_in(client)
    form = {"category": "paper_declaration", "doc4": DOC4, "lane": "lane-1", "csrf": csrf}
    response = client.post("/manual", data={**form, field: value}, follow_redirects=False)
    assert response.headers["location"] == f"/?error={error}#manual"
    assert site.store.event_count() == 0
    assert "alert" in client.get(response.headers["location"]).text


def test_json_api_and_feed_never_carry_personal_data(client: TestClient, site: WebSite) -> None:
    csrf = logged_in(client)
    site.device_status("d01", "online")
    site.scan("d01", 1)
    site.scan("d01", 2, reason="expired")
    client.post(
        "/manual",
        data={"category": "paper_declaration", "doc4": DOC4, "lane": "lane-1", "csrf": csrf},
    )
    bodies = [
        client.get(p).text
        for p in (
            "/api/status",
            "/api/devices",
            "/api/lanes",
            "/api/decisions",
            "/api/rejects",
            "/api/gaps",
            "/metrics",
        )
    ]
    with client.stream("GET", "/api/feed") as stream:
        bodies.append(stream.read().decode())
    assert '"typ":"manual"' in bodies[-1]
    for body in bodies:
        assert DOC4 not in body.upper()
        for key in ('"doc4"', '"name"', '"dob"'):
            assert key not in body
    status_page = client.get("/").text  # the feed and counters there: no doc4 either
    assert "manual entry" in status_page and DOC4 not in status_page.upper()


def test_status_counts_lanes_and_shows_decisions(client: TestClient, site: WebSite) -> None:
    logged_in(client)
    site.scan("d01", 1, lane="lane-1")
    site.scan("d01", 2, lane="lane-1", reason="expired")
    site.scan("d02", 1, lane="lane-2", reason="clock_untrusted", verdict="warn")
    lanes = {lane["lane"]: lane for lane in client.get("/api/lanes").json()}
    assert (lanes["lane-1"]["passed"], lanes["lane-1"]["failed"]) == (1, 1)
    assert lanes["lane-1"]["failed_by_reason"] == {"expired": 1}
    assert lanes["lane-2"]["warned"] == 1
    assert lanes["lane-1"]["per_minute"] == 2.0
    decisions = client.get("/api/decisions").json()
    assert [d["reason"] for d in decisions] == ["ok", "expired", "clock_untrusted"]
    later = client.get("/api/decisions", params={"after": decisions[0]["id"]}).json()
    assert [d["id"] for d in later] == [d["id"] for d in decisions[1:]]


def test_device_alerts_and_congestion_banner(tmp_path: Path) -> None:
    site = build_site(tmp_path / "busy", lanes={"lane-1": 2, "lane-2": 30})
    site.store.save_document("chot/v1/HN-01/trust", TRUST_TYPE, 5, b"doc")
    site.device_status("d01", "online", trust_version=5)
    site.device_status("d02", "offline", clock="unknown", trust_version=4)
    for seq in (1, 2, 3, 6):  # seq 4 and 5 missing: a gap
        site.scan("d01", seq, lane="lane-1")
    app = create_app(site.ctx)
    with TestClient(app) as client:
        logged_in(client)
        for step, depth in enumerate((3, 9, 20)):  # heartbeats with a rising outbox,
            site.device_status("d03", "online", outbox_depth=depth, t=time.time() + step)
            snap = client.get("/api/status").json()  # each seen by the page's periodic poll
    devices = {d["device"]: d for d in snap["devices"]}
    assert GATEWAY not in devices  # the gateway's own events do not make it a scanner
    assert devices["d01"]["online"] and "sequence_gap" in devices["d01"]["alerts"]
    assert not devices["d02"]["online"]
    assert {"offline", "clock_unknown", "trust_outdated"} <= set(devices["d02"]["alerts"])
    assert "outbox_growing" in devices["d03"]["alerts"]
    assert snap["devices_online"] == 2
    congestion = [b for b in snap["banners"] if b["kind"] == "congestion"]
    assert [b["lane"] for b in congestion] == ["lane-1"]
    assert "over capacity" in congestion[0]["text"]
    site.store.close()


def test_feed_uses_store_ids_and_resumes_after_last_event_id(
    client: TestClient, site: WebSite
) -> None:
    logged_in(client)
    for seq in (1, 2, 3):
        site.scan("d01", seq)
    site.signer.record_load({"lane-1": 20})  # bookkeeping: not shown in the feed
    site.scan("d01", 4)

    def ids(headers: dict | None = None, params: dict | None = None) -> list[int]:
        with client.stream("GET", "/api/feed", headers=headers, params=params) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = stream.read().decode()
        frames = [f for f in text.split("\n\n") if f.startswith("id: ")]
        assert all("event: decision" in f for f in frames)
        return [int(f.split("\n")[0][4:]) for f in frames]

    assert ids() == [1, 2, 3, 5]
    assert ids(headers={"Last-Event-ID": "2"}) == [3, 5]
    assert ids(params={"after": 3}) == [5]


def test_metrics_text_exposition(client: TestClient, site: WebSite) -> None:
    site.device_status("d01", "online")
    site.device_status("d02", "offline")
    site.scan("d01", 1, lane="lane-1")
    site.scan("d01", 2, lane="lane-1")
    site.store.commit_batch([], [Rejected("bad_signature", "x", "d09")])
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    line_re = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"\\]*"(?:,[a-z_]+="[^"\\]*")*\})? (\S+)$')
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif not line.startswith("# HELP "):
            match = line_re.match(line)
            assert match, f"not exposition format: {line!r}"
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    assert types["chot_gateway_rejects_total"] == "counter"
    assert samples['chot_gateway_store_depth{state="pending"}'] == 2
    assert samples['chot_gateway_rejects_total{reason="bad_signature"}'] == 1
    assert samples["chot_gateway_devices_online"] == 1
    assert samples['chot_gateway_lane_per_minute{lane="lane-1"}'] == 2
    assert samples["chot_gateway_forward_lag_seconds"] >= 0
    assert samples["chot_gateway_ingest_rate"] == pytest.approx(2 / 60)


def test_healthz_is_503_when_the_store_cannot_commit(client: TestClient, site: WebSite) -> None:
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json()["ok"] is True
    blocker = sqlite3.connect(site.config.store_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the store
    try:
        stuck = client.get("/healthz")
        assert stuck.status_code == 503
        assert "not writable" in stuck.json()["error"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    deadline = time.monotonic() + 5
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_logout_ends_the_session(client: TestClient, site: WebSite) -> None:
    csrf = logged_in(client)
    old = client.cookies["chot_session"]
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    client.cookies.set("chot_session", old)  # a copied cookie is revoked too
    assert client.get("/api/status").status_code == 401
    assert (OPERATOR, "logout") in audit_actions(site)


def test_serves_https_with_secure_cookies(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    create_ca(tls, "HN-01")
    create_server_cert(tls, tls, ["127.0.0.1"])
    files = {"certfile": str(tls / "server.crt"), "keyfile": str(tls / "server.key")}
    site = build_site(tmp_path / "tls-site", web={**files, "tls": True})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(create_app(site.ctx), WebConfig(host="127.0.0.1", port=port, **files))
    trust = ssl.create_default_context(cafile=tls / "ca.crt")
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust) as c:
            assert c.get("/healthz").json()["ok"] is True
            token = CSRF_RE.search(c.get("/login").text).group(1)
            response = c.post(
                "/login", data={"user": OPERATOR, "password": PASSWORD, "csrf": token}
            )
            assert response.status_code == 303
            cookie = response.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie
            assert "Strict-Transport-Security" in response.headers
            assert c.get("/api/status").status_code == 200
    finally:
        server.stop()
        site.store.close()


def test_open_feeds_are_bounded(site: WebSite) -> None:
    app = create_app(site.ctx, feed_poll_s=0.05, feed_max_s=1.0, max_feeds=1)
    first, second = TestClient(app), TestClient(app)
    for c in (first, second):
        logged_in(c)
    site.scan("d01", 1)
    frames: list[str] = []
    reader = threading.Thread(
        target=lambda: frames.append(first.get("/api/feed").text), daemon=True
    )
    reader.start()
    time.sleep(0.4)  # the first feed is open now
    busy = second.get("/api/feed").text
    reader.join(5)
    assert "event: busy" in busy and "event: decision" not in busy
    assert "event: decision" in frames[0]
    assert "event: decision" in second.get("/api/feed").text  # free again once it closed


def test_healthz_names_a_lost_broker_and_stays_200_while_the_store_commits(
    site: WebSite,
) -> None:
    """A monitor polling /healthz learns the broker is gone (the gateway's real health, as
    GatewayApp builds it) while the probe still proves the store takes writes."""
    broker_up = {"connected": False}

    def health() -> dict:
        return gateway_health(
            site.config,
            site.store,
            started_at=time.time(),
            mqtt_connected=broker_up["connected"],
            ingest=None,
            forwarder=None,
            fetcher=None,
            recent_passes=None,
        )

    ctx = dataclasses.replace(site.ctx, health=health)
    with TestClient(create_app(ctx, healthz_timeout_s=0.5)) as client:
        down = client.get("/healthz")
        assert down.status_code == 200
        assert down.json()["mqtt_connected"] is False
        assert "mqtt_disconnected" in down.json()["alerts"]
        broker_up["connected"] = True
        up = client.get("/healthz").json()
        assert up["mqtt_connected"] is True and "mqtt_disconnected" not in up["alerts"]
