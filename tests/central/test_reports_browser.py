"""The centre's report page in real headless Chromium: both checkpoints' totals and a drawn
daily chart for each (Chart.js served by the centre, no internet), screenshot checked."""

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from central import queries
from central.api import create_app
from central.backends import open_store
from central.migrate import migrate
from tests.central.fixtures import OPERATOR_TOKENS, operator_headers
from tests.central.server import serve
from tests.central.test_reports import DAY1, DAY2, rows

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def test_report_page_shows_both_sites_with_a_chart_each(fleet, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium")
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    store.insert_events(
        list(rows("HCMC", DAY1, [("pass", "ok")] * 120 + [("fail", "expired")] * 7))
    )
    store.insert_events(list(rows("HCMC", DAY2, [("pass", "ok")] * 90 + [("fail", "revoked")] * 3)))
    store.insert_events(list(rows("HN-01", DAY2, [("pass", "ok")] * 40 + [("warn", "clock")] * 2)))
    app = create_app(fleet.config(f"sqlite:///{tmp_path}/central.db"), store)
    shot = tmp_path / "report.png"
    query = f"report?from={DAY1.isoformat()}&to={DAY2.isoformat()}"
    with serve(app) as url:
        assert httpx.get(f"{url}/{query}").status_code == 401  # operators only
        csv_text = httpx.get(
            f"{url}/api/v1/report/totals?from={DAY1}&to={DAY2}&format=csv",
            headers=operator_headers("analyst"),
        ).text
        assert "HCMC,2021-09-01..2021-09-02,220,210,10" in csv_text
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(
                extra_http_headers=operator_headers("analyst"),
                viewport={"width": 1280, "height": 1000},
            )
            page = context.new_page()
            outside: list[str] = []
            page.on(
                "request",
                lambda r: None if r.url.startswith(url) else outside.append(r.url),
            )
            page.goto(f"{url}/{query}")
            page.wait_for_function("document.body?.dataset.charts === '2'")
            text = page.inner_text("body")
            assert (
                "HCMC, 2021-09-01..2021-09-02: 220 declarations, 210 accepted, 10 rejected" in text
            )
            assert "HN-01, 2021-09-01..2021-09-02: 42 declarations, 40 accepted, 2 rejected" in text
            assert page.inner_text("tr[data-site='all sites']").split("\t")[1:4] == [
                "262",
                "250",
                "12",
            ]
            for site in ("HCMC", "HN-01"):  # each canvas holds a drawn chart (coloured pixels)
                drawn = page.evaluate(
                    """id => {
                        const c = document.getElementById(id);
                        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        let n = 0;
                        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                        return n;
                    }""",
                    f"chart-{site}",
                )
                assert drawn > 2_000, site
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    assert not outside, outside  # nothing fetched from the internet
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    store.close()


def test_health_staff_sign_in_through_the_form(fleet, tmp_path):
    """No bearer header: the browser is sent to /login, the credential's token goes into the
    form, a Secure HttpOnly SameSite=Strict session cookie opens the page; a tracer-less
    report token is enough, a wrong one is refused, a form post without the CSRF cookie is
    refused, signing out ends the session."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium")
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    store.insert_events(list(rows("HCMC", DAY1, [("pass", "ok")] * 12 + [("fail", "expired")])))
    app = create_app(fleet.config(f"sqlite:///{tmp_path}/central.db"), store)
    query = f"report?from={DAY1.isoformat()}"
    with serve(app) as url:
        forged = httpx.post(
            f"{url}/login",
            data={"token": OPERATOR_TOKENS["analyst"], "csrf": "x", "next": "/report"},
        )
        assert forged.status_code == 403 and "chot_session" not in forged.cookies
        assert "Vui lòng thử lại" in forged.text  # no Accept-Language: Vietnamese
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(locale="vi-VN")
            page = context.new_page()
            page.goto(f"{url}/{query}")
            assert page.url.startswith(f"{url}/login?next=")
            assert page.inner_text("h1") == "Đăng nhập xem báo cáo điểm chốt"
            assert page.get_attribute("html", "lang") == "vi"
            page.fill("input[name=token]", "not-a-real-token")
            page.click("button[type=submit]")
            assert page.inner_text("#error") == (
                "Chưa đăng nhập: mã truy cập không đúng hoặc đã bị thu hồi."
            )
            page.click("a[hreflang=en]")  # the switch keeps where the person was going
            assert page.inner_text("h1") == "Sign in to the checkpoint reports"
            page.fill("input[name=token]", "not-a-real-token")
            page.click("button[type=submit]")
            assert page.inner_text("#error") == "Not signed in: unknown or revoked credential."
            page.fill("input[name=token]", OPERATOR_TOKENS["analyst"])
            page.click("button[type=submit]")
            # the sign-in answers with a redirect: wait for the report's own document, since
            # a predicate run while the old one unloads sees no body (failed once in CI)
            page.wait_for_url(f"{url}/{query}")
            page.wait_for_function("document.body?.dataset.charts === '1'")
            assert "HCMC, 2021-09-01: 13 declarations, 12 accepted, 1 rejected" in page.inner_text(
                "body"
            )
            [session] = [c for c in context.cookies() if c["name"] == "chot_session"]
            assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
            page.click("text=Sign out")
            page.wait_for_url(f"{url}/login")
            page.goto(f"{url}/{query}")
            assert page.url.startswith(f"{url}/login?next=")
            browser.close()
    with open_store(f"sqlite:///{tmp_path}/central.db") as check:
        log = queries.access_log(check)
    assert [(e["operator"], e["via"], e["query"]) for e in log] == [
        ("analyst", "api", "report_totals")
    ]
    store.close()


def test_sign_in_page_in_vietnamese_unless_english_is_asked_for(fleet, tmp_path):
    """Vietnamese by default; English by Accept-Language or the switch (kept in a cookie);
    a report credential without the report role is refused in the page's language."""
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    app = create_app(fleet.config(f"sqlite:///{tmp_path}/central.db"), store)
    with serve(app) as url:
        plain = httpx.get(f"{url}/login")
        assert plain.status_code == 200 and '<html lang="vi">' in plain.text
        for words in ("Đăng nhập xem báo cáo điểm chốt", "Mã truy cập", ">Đăng nhập</button>"):
            assert words in plain.text
        assert "Sign in" not in plain.text
        asked = httpx.get(f"{url}/login", headers={"Accept-Language": "en-GB,vi;q=0.5"})
        assert (
            '<html lang="en">' in asked.text and "Sign in to the checkpoint reports" in asked.text
        )
        ranked = httpx.get(f"{url}/login", headers={"Accept-Language": "fr, vi;q=0.9, en;q=0.8"})
        assert '<html lang="vi">' in ranked.text
        with httpx.Client(base_url=url) as browser:
            switched = browser.get("/login?lang=en&next=/report")
            assert '<html lang="en">' in switched.text
            assert switched.cookies.get("chot_lang") == "en"
            browser.cookies.set("chot_lang", "en")  # Secure: httpx keeps it off plain HTTP
            again = browser.get("/login")
            assert "Sign in to the checkpoint reports" in again.text
            csrf = again.cookies.get("chot_login_csrf")
            browser.cookies.set("chot_login_csrf", csrf)
            refused = browser.post(
                "/login",
                data={"token": OPERATOR_TOKENS["analyst"][::-1], "csrf": csrf, "lang": "vi"},
            )
            assert refused.status_code == 401
            assert "Chưa đăng nhập: mã truy cập không đúng hoặc đã bị thu hồi." in refused.text
    store.close()
