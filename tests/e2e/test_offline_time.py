"""A site with no internet keeps one time (issue #14): the gateway is the site's clock.

The site runs offline (no centre reachable), its units have no clock of their own (a Pi has
no RTC; CHOT_CLOCK_STATE=unknown stands in for a unit whose timesyncd has not synced):

- gateway synchronised (GPS/PPS or chrony's orphan time, CHOT_CLOCK_STATE=synced): the
  gateway's signed acks carry its time and a unit takes a bounded clock from the first ack
  that answers its heartbeat, so valid passes are green within seconds of it connecting;
- gateway unsynchronised: its acks say so, the units have no time to trust, valid passes are
  amber (clock_untrusted), and the status page shows why in a banner.
"""

import os
import re
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chot.system import OPERATOR
from harness.e2e.device_proc import DeviceProc
from harness.e2e.passes import Scan, make_scans
from harness.e2e.site import E2ESite
from harness.polling import wait_until

GREEN_WITHIN_S = 10.0  # from the unit's "online" to its first green decision
BANNER_VI = "đồng hồ cổng chưa đồng bộ — các lượt quét sẽ màu vàng; kiểm tra NTP/GPS của cổng"


class OfflineSite:
    def __init__(self, site: E2ESite, valid: list[list[Scan]]) -> None:
        self.site = site
        self.valid = valid  # per unit, valid passes only
        self.taken = [0] * len(valid)

    def take(self, unit: DeviceProc, n: int) -> list[str]:
        start = self.taken[unit.index]
        texts = [s.text for s in self.valid[unit.index][start : start + n]]
        assert len(texts) == n, "pass pool exhausted"
        self.taken[unit.index] = start + n
        return texts


@pytest.fixture(scope="module")
def offline_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineSite]:
    site = E2ESite(tmp_path_factory.mktemp("offline-time"), devices=2)
    try:
        scans = make_scans(site.site, [60, 60], now=site.now)
        valid = [[s for s in unit if s.category == "valid"] for unit in scans]
        for unit in site.devices:  # no clock of their own
            unit.env = {**unit.env, "CHOT_CLOCK_STATE": "unknown"}
        site.services["broker"].start()  # no centre: the site has no internet
        yield OfflineSite(site, valid)
    finally:
        site.close()


def start_gateway(site: E2ESite, clock_state: str) -> None:
    """(Re)start the gateway process with its clock in `clock_state` (common/timesync.py)."""
    gateway = site.services["gateway"]
    gateway.stop()
    before = os.environ.get("CHOT_CLOCK_STATE")
    os.environ["CHOT_CLOCK_STATE"] = clock_state  # the child inherits it
    try:
        site.start_gateway()
    finally:
        if before is None:
            os.environ.pop("CHOT_CLOCK_STATE", None)
        else:
            os.environ["CHOT_CLOCK_STATE"] = before


def decisions(site: E2ESite, dev: str, after_seq: int) -> list[tuple[int, str, str, str]]:
    """(seq, verdict, reason, clock) of the unit's scans the gateway holds, past `after_seq`."""
    return site.gateway_query(
        "SELECT seq, verdict, reason, clock FROM events WHERE dev = ? AND typ = 'scan' "
        "AND seq > ? ORDER BY seq",
        (dev, after_seq),
    )


def last_seq(site: E2ESite, dev: str) -> int:
    rows = site.gateway_query("SELECT MAX(seq) FROM events WHERE dev = ?", (dev,))
    return (rows[0][0] or 0) if rows else 0


def restart_units(site: E2ESite) -> float:
    """Fresh unit processes (no clock bound kept from before); returns when all are online."""
    for unit in site.devices:
        unit.stop()
        unit.start()
    site.wait_online()
    return time.monotonic()


def status_html(site: E2ESite) -> str:
    """The status page as a gate operator reads it: logged in, in the site's language."""
    trust = ssl.create_default_context(cafile=site.site.web_ca)
    with httpx.Client(base_url=site.site.web_url, timeout=10, verify=trust) as web:
        token = re.search(r'name="csrf" value="([^"]+)"', web.get("/login").text)
        assert token, "no CSRF token on the login page"
        form = {"user": OPERATOR, "csrf": token.group(1), "password": site.site.operator_password}
        answer = web.post("/login", data=form)
        assert answer.status_code in (200, 303), answer.status_code
        page = web.get("/")
        page.raise_for_status()
        return page.text


def page_when_up(site: E2ESite, read) -> Any:
    """The status page starts after the gateway's MQTT session: ask until it answers."""

    def attempt() -> Any:
        try:
            return read()
        except httpx.HTTPError:
            return None

    return wait_until(attempt, 30, interval=0.3, message="the status page")


def test_gateway_synced_units_without_clock_are_green_within_seconds(offline_site) -> None:
    site = offline_site.site
    start_gateway(site, "synced")
    for unit in site.devices:
        unit.start()
    site.wait_online()
    online_at = time.monotonic()
    base = {u.id: last_seq(site, u.id) for u in site.devices}
    for unit in site.devices:  # a person every half second from the moment it is online
        unit.feed(offline_site.take(unit, 20), rate=2.0)

    def first_green(unit: DeviceProc) -> int | None:
        return next(
            (s for s, v, _, _ in decisions(site, unit.id, base[unit.id]) if v == "pass"), None
        )

    for unit in site.devices:
        seq = wait_until(
            lambda u=unit: first_green(u),
            GREEN_WITHIN_S,
            interval=0.1,
            message=lambda u=unit: f"{u.id} green: {decisions(site, u.id, base[u.id])}",
        )
        assert time.monotonic() - online_at <= GREEN_WITHIN_S + 1
        unit.join_feed(30)
        rows = wait_until(
            lambda u=unit: (r := decisions(site, u.id, base[u.id])) and len(r) == 20 and r,
            20,
            message=lambda u=unit: f"{u.id}'s 20 decisions at the gateway",
        )
        # once the gateway's time arrived every valid pass is green on a synced clock
        assert all(r[1:] == ("pass", "ok", "synced") for r in rows if r[0] >= seq), rows
        # before it, at most the first second or two were amber for want of time
        assert all(r[1:3] == ("warn", "clock_untrusted") for r in rows if r[0] < seq), rows
        assert seq - base[unit.id] <= 2 * GREEN_WITHIN_S

    health = page_when_up(site, lambda: site.status_page("/api/status"))["health"]
    assert "gateway_clock_unsynced" not in health["alerts"]
    assert BANNER_VI not in page_when_up(site, lambda: status_html(site))


def test_gateway_unsynced_passes_are_amber_and_the_page_says_why(offline_site) -> None:
    site = offline_site.site
    start_gateway(site, "unknown")
    restart_units(site)
    base = {u.id: last_seq(site, u.id) for u in site.devices}
    for unit in site.devices:
        unit.feed(offline_site.take(unit, 10), rate=2.0)
    for unit in site.devices:
        unit.join_feed(30)
        rows = wait_until(
            lambda u=unit: (r := decisions(site, u.id, base[u.id])) and len(r) == 10 and r,
            30,
            message=lambda u=unit: f"{u.id}'s 10 decisions at the gateway",
        )
        # the gateway's acks say its clock is not synchronised: no time to trust (at most
        # the lower bound of the signed lists the unit holds: "bounded"), amber
        assert {r[1:3] for r in rows} == {("warn", "clock_untrusted")}, rows
        assert {r[3] for r in rows} <= {"bounded", "unknown"}, rows

    status = page_when_up(site, lambda: site.status_page("/api/status"))
    assert "gateway_clock_unsynced" in status["health"]["alerts"]
    levels = {(a["kind"], a["device"]): a["level"] for a in status["alerts"]}
    assert levels[("gateway_clock_unsynced", None)] == "warn"  # amber
    html = page_when_up(site, lambda: status_html(site))
    banners = re.search(r'<section id="banners".*?</section>', html, re.S)
    assert banners and BANNER_VI in banners.group(0), banners and banners.group(0)
