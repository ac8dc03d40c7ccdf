"""The forwarder moves past events the real central app rejects (issue #13, item 2): they are
kept at the gateway as `rejected` with the centre's reason, counted on /metrics and raised on
the status page, and never resent; everything else is confirmed."""

import sqlite3
import time

import pytest

from central.api import create_app
from central.backends import open_store
from central.config import CentralConfig
from central.migrate import migrate
from gateway.forwarder import Forwarder
from gateway.store import Store
from gateway.verifier import verify_event
from gateway.web import metrics
from protocol.registry import Registry
from tests.central.server import serve
from tests.support.gateway_core import SITE, Site, make_event

REFUSED_LANE = "refused-lane"


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site", devices=2)


@pytest.fixture
def central(tmp_path, site):
    """The real central app on SQLite; d02 is revoked there only (the gateway has not heard
    yet), and the database refuses one lane (a constraint the contract does not know)."""
    registry = Registry.load(site.dir / "registry.json")
    registry.set_token("gw-a", "tok-a")
    registry.revoke("d02")
    registry.save(tmp_path / "central-registry.json")
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    store.execute(
        "CREATE TRIGGER refuse_lane BEFORE INSERT ON events "
        f"WHEN NEW.lane = '{REFUSED_LANE}' BEGIN SELECT RAISE(ABORT, 'lane refused'); END"
    )
    config = CentralConfig(store=store.url, registry=tmp_path / "central-registry.json")
    with serve(create_app(config, store)) as url:
        yield url, store
    store.close()


def accepted(site: Site, dev: str, seq: int, **kw):
    return verify_event(make_event(site.keys[dev], dev, seq, **kw)[0], dev, SITE, site.registry)


def test_rejected_events_are_kept_shown_and_never_resent(tmp_path, site, central) -> None:
    url, central_store = central
    store = Store(tmp_path / "g.db")
    good = [accepted(site, "d01", seq) for seq in range(1, 6)]
    refused = accepted(site, "d01", 6, lane=REFUSED_LANE)
    revoked = [accepted(site, "d02", seq) for seq in (1, 2)]
    store.commit_batch([*good[:2], refused, revoked[0], *good[2:], revoked[1]])
    fwd = Forwarder(store, "gw-a", url, "tok-a", batch_size=100)
    try:
        assert fwd.forward_once() == 8  # one batch, every event answered for
        assert fwd.forward_once() == 0  # nothing left to send: the rejected stay put
    finally:
        fwd.stop()

    central_eids = {r["eid"] for r in central_store.fetch("SELECT eid FROM events")}
    assert central_eids == {a.eid for a in good}
    assert store.depth() == {"pending": 0, "forwarded": 5, "rejected": 3}
    with sqlite3.connect(tmp_path / "g.db") as db:
        held = dict(db.execute("SELECT eid, central_reason FROM events WHERE state='rejected'"))
    assert held == {
        refused.eid: "store_refused",
        revoked[0].eid: "device_revoked",
        revoked[1].eid: "device_revoked",
    }
    assert fwd.stats.rejected == 3 and fwd.stats.confirmed == 5
    text = metrics.render(store, {}, int(time.time() * 1000))
    assert 'chot_gateway_central_rejects_total{reason="store_refused"} 1' in text
    assert 'chot_gateway_central_rejects_total{reason="device_revoked"} 2' in text
    assert 'chot_gateway_store_depth{state="rejected"} 3' in text
    assert "central_rejected_events" in store.alerts()
    store.close()
