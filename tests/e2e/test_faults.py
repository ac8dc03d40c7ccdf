"""Faults on a running site, each while its units are scanning.

Every test types a round of passes into the 4 units at a steady pace, breaks one part of the
chain half-way, checks that the units kept deciding and that the gateway's status shows the
fault, repairs it, and ends on the round checks (harness/e2e/rounds.py): every committed
decision at the central store exactly once, in each unit's order, with the right verdict.
The site is shared by the module (one start-up), so each test leaves it whole again.
"""

import errno
import json
from pathlib import Path

from harness.e2e.clock_unit import set_clock
from harness.e2e.device_proc import outbox_state
from harness.e2e.rounds import Round
from harness.e2e.site import E2ESite
from harness.polling import wait_until
from tests.e2e.conftest import ROUND

RATE = 60.0  # scans per second per unit: a round lasts about 4 s


def _started(site: E2ESite, pool, rate: float = RATE) -> Round:
    rnd = Round(site, pool.take(ROUND), rate).start()
    wait_until(
        lambda: all(rnd.decided(d) >= 40 for d in site.devices), 30, message="the round underway"
    )
    return rnd


def _gateway_log(site: E2ESite) -> str:
    return site.services["gateway"].log_path.read_text(errors="replace")


def test_unit_killed_mid_write_replays_its_outbox(fault_site) -> None:
    site, pool = fault_site
    rnd = _started(site, pool)
    victim = site.devices[0]
    victim.kill()  # kill -9 while it is committing decisions
    committed = rnd.decided(victim)
    assert 0 < committed < ROUND
    # its broker session ends without a goodbye: the last will tells the gateway
    wait_until(
        lambda: site.device_status(victim.id) == "offline", 15, message="unit 1 shown offline"
    )
    assert "offline" in site.status_page_devices()[victim.id]["alerts"]  # the operators see it
    rnd.assert_deciding(site.devices[1:])
    victim.start()
    rnd.resume(victim)  # the queue of people carries on from the next one
    site.wait_online()
    rnd.finish()
    status = site.gateway_status()
    unit = next(d for d in status["devices"] if d["dev"] == victim.id)
    assert unit["online"] and unit["ack"] == site.device_seq(victim)
    # the unit writes the gateway's last acks to its outbox file within its settle time
    wait_until(
        lambda: outbox_state(victim.outbox)["depth"] == 0, 15, message="unit 1's outbox drained"
    )


def test_broker_killed_and_restarted(fault_site) -> None:
    site, pool = fault_site
    rnd = _started(site, pool)
    site.services["broker"].kill()  # kill -9: its in-memory queues and sessions are gone
    rnd.assert_deciding(site.devices, seconds=2.0)
    site.services["broker"].start()
    rnd.finish()
    assert "disconnected from broker" in _gateway_log(site)
    status = site.gateway_status()
    assert status["depth"]["pending"] == 0 and status["open_gaps"] == []
    # every scanner, and only scanners: the gateway's own load events give it no device row
    assert {d["dev"] for d in status["devices"]} == {d.id for d in site.devices}
    assert all(d["online"] for d in status["devices"])


def test_gateway_killed_and_restarted(fault_site) -> None:
    site, pool = fault_site
    rnd = _started(site, pool)
    before = site.gateway_status()["counters"]
    site.services["gateway"].kill()
    rnd.assert_deciding(site.devices, seconds=2.0)
    # nothing acknowledges them now: the units' outboxes hold what they decided
    assert all(outbox_state(d.outbox)["depth"] > 0 for d in site.devices)
    site.start_gateway()
    rnd.finish()
    after = site.gateway_status()
    assert after["counters"]["stored"] > before["stored"]
    assert after["depth"]["pending"] == 0
    shown = site.status_page()  # the restarted gateway's page is back, every unit online
    assert shown["devices_online"] == len(site.devices)
    assert "start" in {row[0] for row in site.gateway_query("SELECT action FROM audit")}


def test_central_store_down_for_a_while(fault_site) -> None:
    site, pool = fault_site
    rnd = _started(site, pool)
    site.services["central"].stop()
    rnd.assert_deciding(site.devices, seconds=2.0)
    # the gateway holds what it stored and says it cannot forward
    during = wait_until(
        lambda: (s := site.gateway_status())["depth"]["pending"] > 0 and s,
        20,
        message="events pending at the gateway",
    )
    assert during["forward_lag_s"] > 0
    site.services["central"].start()
    rnd.finish()
    after = wait_until(
        lambda: (s := site.gateway_status())["depth"]["pending"] == 0 and s, 30, message="drained"
    )
    assert after["forward_lag_s"] == 0


def test_unit_cut_from_the_network(fault_site) -> None:
    site, pool = fault_site
    victim, proxy = site.devices[3], site.proxies[3]
    rnd = _started(site, pool)
    proxy.cut()
    wait_until(
        lambda: site.device_status(victim.id) == "offline", 15, message="unit 4 shown offline"
    )
    rnd.assert_deciding(site.devices, seconds=2.0)  # the cut unit too: it decides offline
    assert outbox_state(victim.outbox)["depth"] > 0
    status = site.gateway_status()
    unit = next(d for d in status["devices"] if d["dev"] == victim.id)
    assert not unit["online"] and "offline" in unit["alerts"]
    page = site.status_page_devices()  # what the gate operator sees
    assert not page[victim.id]["online"] and "offline" in page[victim.id]["alerts"]
    assert all(page[d.id]["online"] for d in site.devices if d is not victim)
    proxy.restore()
    wait_until(lambda: site.device_status(victim.id) == "online", 20, message="unit 4 back online")
    assert site.status_page_devices()[victim.id]["online"]
    rnd.finish()
    # the gateway's last acks reach the unit just after the centre has the events; the unit
    # writes them to its outbox file within its settle time
    wait_until(
        lambda: outbox_state(victim.outbox)["depth"] == 0, 15, message="unit 4's outbox drained"
    )


def _fill(folder: Path) -> Path:
    """Write a ballast file until the filesystem is full."""
    ballast = folder / "ballast"
    chunk = b"\0" * (1 << 20)
    with ballast.open("wb", buffering=0) as f:
        for size in (len(chunk), 4096):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return ballast


def test_gateway_disk_full(fault_site) -> None:
    site, pool = fault_site
    assert site.mounted is not None, "the gateway state dir should be a tmpfs"
    rnd = _started(site, pool)
    ballast = _fill(site.mounted)
    try:
        rnd.assert_deciding(site.devices, seconds=2.0)
        # the gateway cannot commit, so it must not acknowledge: the outboxes grow
        wait_until(
            lambda: all(outbox_state(d.outbox)["depth"] > 10 for d in site.devices),
            20,
            message="the units' outboxes to fill up while the gateway cannot commit",
        )
        for dev in site.devices:
            acked = outbox_state(dev.outbox)["acked_seq"]
            stored = site.gateway_query("SELECT COUNT(*) FROM events WHERE dev = ?", (dev.id,))
            assert acked <= stored[0][0], f"{dev.id}: acked {acked} but only {stored} stored"
        assert "store commit failed" in _gateway_log(site)
        assert "disk_low" in site.gateway_status()["alerts"]
        assert "disk_low" in site.status_page()["health"]["alerts"]  # the operators see it
    finally:
        ballast.unlink()
    rnd.finish()
    assert "disk_low" not in site.gateway_status()["alerts"]


def test_unit_clock_jumps(fault_site) -> None:
    """A unit's clock jumps back (below the newest signed document it holds), jumps forward,
    loses its sync and comes back: while it cannot be trusted no decision is green, and the
    gateway shows the unit's clock alert from its heartbeat."""
    site, pool = fault_site
    victim = site.devices[1]
    clock_file = site.workdir / "clock-lane2.json"
    set_clock(clock_file)
    victim.stop()
    victim.clock_file = clock_file
    victim.start()
    site.wait_online()

    def heartbeat_clock() -> str | None:
        rows = site.gateway_query("SELECT heartbeat FROM devices WHERE dev = ?", (victim.id,))
        return rows[0][0] and json.loads(rows[0][0]).get("clock")

    rnd = _started(site, pool, rate=30.0)
    phases = [
        (-30 * 86_400, "synced", "bounded"),  # a month back: below the trust list's issued_at
        (86_400, "synced", "synced"),  # a day forward: passes are still valid then
        # the kernel says "not synchronised": only the signed documents' lower bound is left
        (0, "unknown", "bounded"),
        (0, "synced", "synced"),
    ]
    for offset, state, shown in phases:
        mark = rnd.decided(victim)
        set_clock(clock_file, offset_s=offset, state=state)
        wait_until(lambda s=shown: heartbeat_clock() == s, 10, message=f"heartbeat clock {shown}")
        wait_until(
            lambda m=mark: rnd.decided(victim) >= m + 15, 20, message="decisions in this phase"
        )
        if offset < 0:  # the operator sees it on the status page / `chot gateway status`
            unit = next(d for d in site.gateway_status()["devices"] if d["dev"] == victim.id)
            assert "clock_bounded" in unit["alerts"]

    def expect(scan, row) -> None:
        if row["clock"] == "synced":
            assert (row["verdict"], row["reason"]) == (scan.verdict, scan.reason)
            return
        assert row["verdict"] != "pass", f"green under a {row['clock']} clock"
        if scan.category == "valid":
            assert (row["verdict"], row["reason"]) == ("warn", "clock_untrusted")
        elif scan.category == "expired":
            assert row["reason"] in ("expired", "clock_untrusted")
        else:
            assert (row["verdict"], row["reason"]) == (scan.verdict, scan.reason)

    rows = rnd.finish(expect=expect)[victim.id]
    clocks = {row["clock"] for row in rows}
    assert {"bounded", "synced"} <= clocks, clocks
    untrusted = [r for r in rows if r["clock"] != "synced" and r["reason"] == "clock_untrusted"]
    assert untrusted and all(r["verdict"] == "warn" for r in untrusted)
