"""The status page in a real headless Chromium against the app served by uvicorn: login,
devices going online/offline, the live feed updating without a reload, a manual entry made
through the form. Leaves a screenshot in artifacts/status-page.png."""

import socket
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from gateway.web import create_app, serve
from provisioning.tls import create_ca, create_server_cert
from tests.support.gateway_web import DOC4, OPERATOR, PASSWORD, build_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_page_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (never a downloaded one)")
    tls = tmp_path / "tls"  # the page is HTTPS, as a provisioned gateway serves it
    tls.mkdir()
    create_ca(tls, "HN-01")
    create_server_cert(tls, tls, ["127.0.0.1"], name="web")
    web = {
        "tls": True,
        "port": free_port(),
        "certfile": tls / "web.crt",
        "keyfile": tls / "web.key",
    }
    site = build_site(tmp_path / "site", lanes={"lane-1": 3, "lane-2": 20}, web=web)
    app = create_app(site.ctx, refresh_ms=400, feed_poll_s=0.2)
    server = serve(app, site.config.web)
    base = f"https://127.0.0.1:{server.config.port}"
    expect.set_options(timeout=8000)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            # the test CA is not in Chromium's store; test_https.py checks the chain itself
            page = browser.new_page(
                viewport={"width": 1280, "height": 800}, ignore_https_errors=True
            )
            errors: list[str] = []  # console errors once logged in (the 401 login is expected)
            page.goto(base + "/")
            expect(page).to_have_url(base + "/login")
            page.fill("input[name=user]", OPERATOR)
            page.fill("input[name=password]", "wrong password")
            page.click("button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")

            page.fill("input[name=user]", OPERATOR)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(base + "/")
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            expect(page.locator("#feed-state")).to_have_text("live")
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads

            # devices come online, then one goes offline: the table follows without reload
            site.device_status("d01", "online")
            site.device_status("d02", "online", trust_version=3, outbox_depth=2)
            row = page.locator('#devices tr[data-device="d01"]')
            expect(row).to_contain_text("online")
            expect(page.locator("#online-count")).to_have_text("2 of 2 online")
            site.device_status("d01", "offline")
            expect(row).to_have_class("offline")
            expect(row.locator(".pill")).to_have_text("offline")
            expect(page.locator("#banners")).to_contain_text("Scanner d01: offline")

            # new decisions appear in the feed and the lane counters
            site.scan("d02", 1, lane="lane-1")
            site.scan("d02", 2, lane="lane-1", reason="expired")
            site.scan("d02", 3, lane="lane-1", reason="revoked")
            site.scan("d02", 4, lane="lane-1")
            site.scan("d03", 1, lane="lane-2", reason="clock_untrusted", verdict="warn")
            feed = page.locator("#feed li")
            expect(feed).to_have_count(5)
            expect(feed.first).to_contain_text("Scanner clock not trusted")
            expect(page.locator("#feed")).to_contain_text(
                "Expired — ask the person to declare again"
            )
            lane1 = page.locator('#lanes .lane[data-lane="lane-1"]')
            expect(lane1.locator(".num.pass b")).to_have_text("2")
            expect(lane1.locator(".num.fail b")).to_have_text("2")
            expect(page.locator("#banners")).to_contain_text("Lane lane-1 over capacity")
            assert page.evaluate("window.__sameDocument") is True

            # a manual entry through the form shows up in the feed
            page.select_option("select[name=category]", "paper_declaration")
            page.fill("input[name=doc4]", DOC4)
            page.select_option("#manual-form select[name=lane]", "lane-2")
            page.click("#manual-form button[type=submit]")
            expect(page.locator("#manual-ok")).to_be_visible()
            expect(feed.first).to_contain_text("manual entry")
            expect(feed.first).to_contain_text("lane-2")
            assert DOC4 not in page.content().upper()
            assert len(site.store.manual_entries()) == 1

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
            page.set_viewport_size({"width": 768, "height": 1024})  # a tablet, portrait
            overflow = "document.documentElement.scrollWidth - window.innerWidth"
            assert page.evaluate(overflow) <= 0, "page scrolls sideways on a tablet"
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "status-page-tablet.png"))
            assert not errors, errors
            browser.close()
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 8
        site.store.close()
