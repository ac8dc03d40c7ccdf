"""Forwarding to a real HTTP central (tests/support/central_stub.py): batches, confirmation,
central down then up, rejections, bad token, and the gateway's own manual/load events."""

import threading
import time

import pytest

from gateway.forwarder import Forwarder, ForwardError
from gateway.manual import GatewaySigner
from gateway.store import Store
from gateway.verifier import verify_event
from tests.support.central_stub import CentralStub
from tests.support.gateway_core import SITE, Site, make_event, wait_for


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site", devices=2)


@pytest.fixture
def central(tmp_path, site):
    stub = CentralStub(tmp_path / "central.db", {"gw-a": "tok-a"}, key_for=site.key_for).start()
    yield stub
    stub.stop()


def fill(store: Store, site: Site, dev: str, n: int, start: int = 1) -> set[bytes]:
    accepted = [
        verify_event(make_event(site.keys[dev], dev, s)[0], dev, SITE, site.registry)
        for s in range(start, start + n)
    ]
    store.commit_batch(accepted)
    return {a.eid for a in accepted}


def forwarder(store, central, **kw) -> Forwarder:
    opts = {"batch_size": 100, "backoff_initial_s": 0.05, "backoff_max_s": 0.3, "idle_poll_s": 0.05}
    return Forwarder(store, "gw-a", central.url, kw.pop("token", "tok-a"), **{**opts, **kw})


def test_batches_are_marked_forwarded_only_when_central_confirms(tmp_path, site, central):
    store = Store(tmp_path / "g.db")
    eids = fill(store, site, "d01", 250)
    fwd = forwarder(store, central)
    assert fwd.forward_once() == 100  # one batch
    assert store.depth()["pending"] == 150
    while fwd.forward_once():
        pass
    assert central.stored_eids() == eids
    assert store.depth() == {"pending": 0, "forwarded": 250, "rejected": 0}
    # a lost reply: the same events again are only duplicates at the centre
    with store._tx() as db:
        db.execute("UPDATE events SET state='pending'")
    while fwd.forward_once():
        pass
    assert set(central.outcome_counts("duplicate")) == eids
    assert set(central.outcome_counts("stored").values()) == {1}
    fwd.stop()


def test_central_down_for_a_while_then_up_everything_arrives_once(tmp_path, site, central):
    store = Store(tmp_path / "g.db")
    fwd = forwarder(store, central)
    central.stop()  # connection refused
    fwd.start()
    eids = fill(store, site, "d01", 120)
    assert wait_for(lambda: fwd.stats.failures >= 2 and store.depth()["pending"] == 120, 10)
    assert store.forward_lag_s() > 0
    central.start()  # same port
    central.down = True  # up but failing (503)
    eids |= fill(store, site, "d02", 80)
    assert wait_for(
        lambda: store.depth()["pending"] == 200 and "503" in (fwd.stats.last_error or ""), 10
    )
    central.down = False
    assert wait_for(lambda: store.depth()["pending"] == 0, 10)
    fwd.stop()
    assert central.stored_eids() == eids
    assert set(central.outcome_counts("stored").values()) == {1}
    assert fwd.stats.failures == 0 and store.forward_lag_s() == 0


def test_rejected_events_are_kept_counted_and_not_retried(tmp_path, site, central):
    store = Store(tmp_path / "g.db")
    good = fill(store, site, "d01", 5)
    bad = fill(store, site, "d02", 3)
    central.reject_devices = {"d02"}
    fwd = forwarder(store, central)
    assert fwd.forward_once() == 8
    assert store.depth() == {"pending": 0, "forwarded": 5, "rejected": 3}
    assert store.counters()["central_rejected.device_revoked"] == 3
    requests = central.requests
    assert fwd.forward_once() == 0 and central.requests == requests  # nothing left to send
    assert central.stored_eids() == good and not bad & central.stored_eids()
    fwd.stop()


def test_bad_token_keeps_events_pending(tmp_path, site, central):
    store = Store(tmp_path / "g.db")
    fill(store, site, "d01", 3)
    fwd = forwarder(store, central, token="wrong")
    with pytest.raises(ForwardError, match="401"):
        fwd.forward_once()
    assert store.depth()["pending"] == 3
    fwd.stop()


def test_backoff_is_full_jitter_and_capped(tmp_path, central):
    fwd = forwarder(Store(tmp_path / "g.db"), central, backoff_initial_s=1, backoff_max_s=8)
    samples = [fwd.backoff_s(n) for n in (1, 2, 3, 4, 10, 50) for _ in range(200)]
    assert min(samples) >= 0 and max(samples) <= 8
    assert max(fwd.backoff_s(1) for _ in range(200)) <= 1
    assert max(fwd.backoff_s(10) for _ in range(200)) > 4  # grows to the cap
    fwd.stop()


def test_manual_and_load_events_are_signed_stored_and_forwarded_without_doc4(
    tmp_path, site, central
):
    store = Store(tmp_path / "g.db")
    signer = GatewaySigner(store, site.keys["gw-a"], "gw-a", SITE)
    fill(store, site, "d01", 4)
    manual = signer.record_manual("paper_declaration", "Op Lan", lane="lane-1", doc4="7Q2Z")
    load = signer.record_load({"lane-1": 2, "lane-2": 5}, window_s=60)
    assert (manual.seq, load.seq) == (1, 2)  # per-gateway sequence
    assert (
        load.extra["lanes"]["lane-1"]["scans"] == 4 and load.extra["lanes"]["lane-1"]["queue"] == 2
    )
    assert store.manual_entries(include_doc4=True)[0]["doc4"] == "7Q2Z"
    assert "doc4" not in store.manual_entries()[0]
    fwd = forwarder(store, central)
    while fwd.forward_once():
        pass
    fwd.stop()
    rows = {eid: (dev, typ) for eid, _, dev, typ in central.events()}
    assert rows[manual.eid] == ("gw-a", "manual") and rows[load.eid] == ("gw-a", "load")
    with central._lock:
        raws = [r[0] for r in central._db.execute("SELECT raw FROM events")]
    assert all(b"7Q2Z" not in raw for raw in raws)  # doc4 never leaves the gateway
    assert b"Op Lan" in next(r for r in raws if b"manual" in r)  # the operator is signed
    assert store.audit_log()[0]["action"] == "manual_entry"
    with pytest.raises(ValueError):
        signer.record_manual("paper_declaration", "Op Lan", doc4="123456")


def test_forwarder_thread_wakes_on_new_events(tmp_path, site, central):
    store = Store(tmp_path / "g.db")
    fwd = forwarder(store, central, idle_poll_s=30)
    fwd.start()
    time.sleep(0.2)
    eids = fill(store, site, "d01", 10)
    threading.Timer(0.05, fwd.wake).start()
    assert wait_for(lambda: central.stored_eids() == eids, 5)
    fwd.stop()
