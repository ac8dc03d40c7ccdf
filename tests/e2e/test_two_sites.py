"""Publish once, every site follows; units join and leave a live site (issue #15).

Two sites (each its own Mosquitto with dynamic security, gateway and unit) and one centre, all
real processes, provisioned by one ops home and deployed to folders the ops tool never writes
again. Every change below is a `chot provision` command and one `chot provision publish`:
- a pass revoked once is refused at both sites (fail/revoked), no file copied by hand;
- a unit added to a live site is online and deciding within a minute;
- a revoked unit's MQTT login stops working within a minute and its next event, however it
  reaches the gateway, is refused with a reason.
"""

import time
from collections.abc import Iterator

import pytest

from harness.e2e.two_sites import TwoSites
from harness.polling import wait_until

SITES = ("HN-01", "SG-01")
UNITS = {"HN-01": "hn-lane1", "SG-01": "sg-lane1"}
MINUTE = 60.0


@pytest.fixture
def sites(tmp_path) -> Iterator[tuple[TwoSites, dict[str, tuple[str, str]]]]:
    two = TwoSites(tmp_path / "two", SITES)
    try:
        passes = {}  # issued before any ops command runs: the home object is not re-read
        for name, doc in (("first", "001085000001"), ("later", "001085000002")):
            text, claims = two.home.issue_pass(kind="declaration", doc_number=doc, now=two.now)
            passes[name] = (text, claims.pass_ref.hex())
        yield two.start(), passes
    finally:
        two.close()


def test_publish_once_units_join_and_leave(sites) -> None:
    two, passes = sites
    text, ref = passes["later"]
    for site, dev in UNITS.items():
        assert two.scan(site, dev, text) == ("pass", "ok"), site

    # one revocation, published once: both sites refuse the pass
    two.ops("pass", "revoke", ref)
    published = two.publish()
    assert published["ok"], published
    for site, dev in UNITS.items():
        # until the list arrives a rescan is a duplicate; the list makes it revoked
        wait_until(
            lambda s=site, d=dev: two.scan(s, d, text) == ("fail", "revoked"),
            MINUTE,
            interval=1.0,
            message=f"{site}: the revoked pass refused",
        )
    for live in two.sites.values():
        documents = live.status()["documents"]
        assert documents["failures"] == 0 and documents["last_ok_at"], documents
        assert documents["versions"]["_all/revocations"] >= 2, documents

    # a unit joins the live HN-01 site: online and deciding within a minute
    joined = time.monotonic()
    two.add_unit("HN-01", "hn-lane2", lane="lane-2")
    two.publish()
    two.wait_online("HN-01", "hn-lane2", timeout=MINUTE)
    valid, _ = passes["first"]
    assert two.scan("HN-01", "hn-lane2", valid) == ("pass", "ok")
    assert time.monotonic() - joined < MINUTE
    assert not two.login_works("SG-01", "hn-lane2", home_site="HN-01"), "no login elsewhere"

    # a unit leaves: its login stops working within a minute, its next event is refused
    assert two.login_works("HN-01", "hn-lane1")
    left = time.monotonic()
    two.ops("device", "revoke", "hn-lane1")
    two.publish()
    wait_until(
        lambda: not two.login_works("HN-01", "hn-lane1"),
        MINUTE,
        interval=1.0,
        message="the revoked unit's login refused",
    )
    assert time.monotonic() - left < MINUTE
    hn = two.sites["HN-01"]
    seq = two.relay_event("HN-01", "hn-lane1")
    rejected = wait_until(
        lambda: hn.query(
            "SELECT reason FROM rejects WHERE topic_dev = ? ORDER BY id DESC", ("hn-lane1",)
        ),
        30,
        message=f"hn-lane1 seq {seq} refused at the gateway",
    )
    assert rejected[0][0] == "device_revoked", rejected
    assert not hn.query("SELECT 1 FROM events WHERE dev = ? AND seq = ?", ("hn-lane1", seq))
    # the other units go on deciding
    assert two.scan("HN-01", "hn-lane2", valid)[1] == "duplicate_recent"
    assert two.scan("SG-01", "sg-lane1", valid) == ("pass", "ok")
