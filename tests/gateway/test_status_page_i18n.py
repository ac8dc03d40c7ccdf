"""The status page as a Vietnamese gate operator sees it, in a real headless Chromium: Vietnamese
by default (site language; the browser asks for no language chot speaks), English after the
in-page switch (kept on reload), every time in the site's zone for rows from the page load and
rows added live while the browser runs in UTC, the stale-trust banner, and a person turned away
by hand. Leaves artifacts/status-page-vi.png (the README's screenshot, docs/status-page-vi.png)."""

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from common import localtime
from gateway.config import WebConfig
from gateway.web import create_app, serve
from tests.gateway.test_status_page_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port
from tests.support.gateway_web import OPERATOR, PASSWORD, build_site

SITE_TZ = "Asia/Ho_Chi_Minh"


def feed_times(page) -> dict[int, str]:
    rows = page.locator("#feed li")
    return {
        int(rows.nth(i).get_attribute("data-id")): rows.nth(i).locator(".t").inner_text()
        for i in range(rows.count())
    }


def test_status_page_vietnamese_by_default_english_on_switch_one_time_zone(
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (never a downloaded one)")
    site = build_site(tmp_path / "site", lanes={"lane-1": 30, "lane-2": 30}, language="vi")
    assert site.config.timezone == SITE_TZ  # the default for a Vietnamese site
    site.device_status("d01", "online", trust_version=3)
    site.device_status("d02", "online", trust_version=3, clock="unknown")
    site.scan("d01", 1, lane="lane-1")
    site.scan("d01", 2, lane="lane-1", reason="trust_stale", verdict="warn")  # list expired
    site.scan("d01", 3, lane="lane-1", reason="expired")
    app = create_app(site.ctx, refresh_ms=400, feed_poll_s=0.2)
    server = serve(app, WebConfig(host="127.0.0.1", port=free_port(), tls=False))
    base = f"http://127.0.0.1:{server.config.port}"
    expect.set_options(timeout=8000)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(
                locale="fr-FR", timezone_id="UTC", viewport={"width": 1280, "height": 860}
            )
            page = context.new_page()
            page.goto(base + "/")
            expect(page.locator("html")).to_have_attribute("lang", "vi")
            expect(page.locator("h1")).to_have_text("Đăng nhập nhân viên")
            page.fill("input[name=user]", OPERATOR)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(base + "/")
            expect(page.locator("html")).to_have_attribute("lang", "vi")
            expect(page.locator("#feed-state")).to_have_text("trực tiếp")

            # the stale trust list: a banner that says what to do; the untrusted clock too
            banners = page.locator("#banners")
            expect(banners).to_contain_text("Danh sách tin cậy đã cũ ở làn lane-1")
            expect(banners).to_contain_text("cập nhật danh sách")
            expect(banners).to_contain_text("Máy quét d02: giờ không tin cậy")
            expect(page.locator('#devices tr[data-device="d02"] .alerts')).to_contain_text(
                "giờ không tin cậy"
            )
            expect(page.locator("#feed")).to_contain_text("Hết hạn — yêu cầu khai báo lại")
            assert "trust_stale" not in page.locator("#feed").inner_text()

            # live rows, in the site's time like the loaded ones (the browser runs in UTC)
            site.scan("d01", 4, lane="lane-2")
            site.scan("d01", 5, lane="lane-2", reason="revoked")
            expect(page.locator("#feed li")).to_have_count(5)
            expect(page.locator("#feed li").first).to_contain_text("Đã bị thu hồi")
            received = {d.id: d.received_ms for d in site.store.recent_decisions(0, 50)}
            shown = feed_times(page)
            assert len(shown) == 5
            for row_id, text in shown.items():
                assert text == localtime.clock(received[row_id], SITE_TZ), (row_id, text)
                assert text != localtime.clock(received[row_id], "UTC")
            expect(page.locator("#site-tz")).to_contain_text("Asia/Ho_Chi_Minh (UTC+07:00)")

            ARTIFACTS.mkdir(exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "status-page-vi.png"))

            # the in-page switch: English, and it stays for the session
            page.click('#lang-switch a[lang="en"]')
            expect(page.locator("html")).to_have_attribute("lang", "en")
            expect(page.locator("#banners")).to_contain_text(
                "Trust list out of date on lane lane-1"
            )
            expect(page.locator("#feed")).to_contain_text("Revoked — do not let through")
            page.goto(base + "/")
            expect(page.locator("html")).to_have_attribute("lang", "en")
            expect(page.locator("h2").first).to_contain_text("Lanes")
            expect(page.locator("#feed-state")).to_have_text("live")

            # a person turned away by hand, with a reason; counted apart from camera scans
            page.check('#manual-form input[value="turned_away"]')
            page.select_option("#manual-form select[name=category]", "paper_declaration")
            page.select_option("#manual-form select[name=refusal]", "id_mismatch")
            page.fill("#manual-form input[name=doc4]", "4821")  # the ID card was checked
            page.select_option("#manual-form select[name=lane]", "lane-2")
            page.click("#manual-form button[type=submit]")
            expect(page.locator("#manual-ok")).to_be_visible()
            expect(page.locator("#feed li").first).to_contain_text(
                "manual entry: turned away (ID card does not match)"
            )
            [entry] = site.store.manual_entries()
            assert (entry["outcome"], entry["reason"]) == ("turned_away", "id_mismatch")
            lane2 = page.locator('#lanes .lane[data-lane="lane-2"]')
            expect(lane2.locator(".num.manual b")).to_have_text("1")
            expect(lane2.locator(".num.fail b")).to_have_text("1")  # the revoked scan only
            browser.close()
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 8
        site.store.close()
