"""The gateway store: dedupe, per-device sequence (ack point, gaps), forwarding states,
pruning that never touches unforwarded events, and the read API the status page uses."""

import os
from dataclasses import replace

from gateway.store import Accepted, Rejected, Store, now_ms
from gateway.web.alerts import device_alerts


def ev(dev: str, seq: int, *, lane: str = "lane-1", reason: str = "ok", eid: bytes | None = None):
    return Accepted(
        eid=eid or os.urandom(16),
        dev=dev,
        seq=seq,
        typ="scan",
        t_ms=1,
        raw=b"x" * 200,
        verdict="pass" if reason == "ok" else "fail",
        reason=reason,
        lane=lane,
    )


def test_dedupe_by_event_id_and_ack_point(tmp_path):
    store = Store(tmp_path / "g.db")
    first = [ev("d1", 1), ev("d1", 2), ev("d2", 1)]
    result = store.commit_batch(first)
    assert (result.stored, result.duplicates) == (3, 0)
    assert result.acks == {"d1": 2, "d2": 1}
    again = store.commit_batch([first[0], ev("d1", 3)])
    assert (again.stored, again.duplicates) == (1, 1)
    assert again.acks == {"d1": 3}
    assert store.event_count() == 4
    assert store.counters()["duplicate"] == 1


def test_gap_opens_and_closes_when_filled(tmp_path):
    store = Store(tmp_path / "g.db")
    store.commit_batch([ev("d1", 1), ev("d1", 2), ev("d1", 5)])
    assert store.ack_for("d1") == 2
    gaps = store.open_gaps()
    assert gaps == [
        {
            "device": "d1",
            "ep": 0,  # an event without `ep` (from before outbox epochs)
            "lo": 3,
            "hi": 4,
            "missing": [3, 4],
            "missing_count": 2,
            "opened_ms": gaps[0]["opened_ms"],
        }
    ]
    assert store.devices()[0].open_gaps == 1
    assert "sequence_gap" in device_alerts(store.devices()[0], now_ms())
    store.commit_batch([ev("d1", 4)])  # out of order: fills half the gap, ack stays
    assert store.ack_for("d1") == 2 and store.open_gaps()[0]["missing"] == [3]
    result = store.commit_batch([ev("d1", 3)])
    assert result.acks == {"d1": 5}
    assert store.open_gaps() == []
    assert store.counters()["gaps_opened"] == 1 and store.counters()["gaps_closed"] == 1


def test_first_event_of_an_unknown_device_sets_the_baseline(tmp_path):
    store = Store(tmp_path / "g.db")
    assert store.commit_batch([ev("d9", 41)]).acks == {"d9": 41}
    assert store.open_gaps() == []


def test_peer_ack_moves_the_ack_point_over_events_the_other_gateway_holds(tmp_path):
    store = Store(tmp_path / "g.db")
    store.commit_batch([ev("d1", 1), ev("d1", 3), ev("d1", 5)])  # 2 and 4 went to the peer
    assert store.ack_for("d1") == 1
    assert store.note_peer_ack("d1", 0, [(2, 2)]) == 3  # its signed ack names exact seqs
    assert store.note_peer_ack("d1", 0, [(4, 4)]) == 5
    assert store.open_gaps() == []
    assert store.note_peer_ack("d1", 0, [(3, 3)]) == 5  # behind us: nothing changes


def test_a_new_outbox_epoch_is_followed_and_each_epoch_keeps_its_own_gaps(tmp_path):
    """Issue #13: a re-imaged unit (same bundle, fresh outbox) starts a new epoch at seq 1.
    The gateway follows it (the device's ack point is the new epoch's), opens no gap for the
    restart, and keeps the old epoch's accounting apart (a late event still fills it)."""
    store = Store(tmp_path / "g.db")
    old, new = 4_503_599_627_370_497, 17
    store.commit_batch([replace(ev("d1", s), ep=old) for s in (*range(1, 11), 12)])
    assert store.ack_for("d1") == 10
    store.commit_batch([replace(ev("d1", s), ep=new) for s in range(1, 6)])
    (info,) = store.devices()
    assert (info.contiguous, info.highest, info.open_gaps, info.missing) == (5, 5, 1, 1)
    epochs = store._db().execute(
        "SELECT ep, contiguous, highest, gap_missing FROM epochs WHERE dev='d1' ORDER BY ep"
    )
    assert epochs.fetchall() == [(new, 5, 5, 0), (old, 10, 12, 1)]
    gaps = store._db().execute("SELECT ep, lo, hi FROM seq_gaps").fetchall()
    assert gaps == [(old, 11, 11)]
    store.commit_batch([replace(ev("d1", 11), ep=old)])  # the old epoch's late event
    (info,) = store.devices()
    assert (info.contiguous, info.open_gaps, info.missing) == (5, 0, 0)  # still following new
    assert store.note_peer_ack("d1", new, [(6, 9)]) == 9


def test_forwarding_states_and_lag(tmp_path):
    store = Store(tmp_path / "g.db")
    events = [ev("d1", i) for i in range(1, 6)]
    store.commit_batch(events)
    batch = store.pending_batch(3)
    assert [p.eid for p in batch] == [e.eid for e in events[:3]]
    assert store.mark_forwarded([events[0].eid, events[1].eid]) == 2
    assert store.mark_forwarded([events[0].eid]) == 0  # idempotent
    assert store.mark_rejected([(events[2].eid, "bad_signature", "x")]) == 1
    assert store.depth() == {"pending": 2, "forwarded": 2, "rejected": 1}
    assert store.counters()["central_rejected.bad_signature"] == 1
    assert store.forward_lag_s() >= 0
    assert [p.eid for p in store.pending_batch(10)] == [e.eid for e in events[3:]]


def test_prune_removes_forwarded_first_and_never_pending(tmp_path):
    store = Store(tmp_path / "g.db", max_bytes=1_000_000, retention_days=1)
    old = [ev("d1", i) for i in range(1, 3001)]
    store.commit_batch(old, received_ms=1_000)  # long past the retention
    store.mark_forwarded([e.eid for e in old[:2000]])
    fresh = [
        Accepted(**{**e.__dict__, "raw": os.urandom(300)})
        for e in (ev("d2", i) for i in range(1, 3001))
    ]
    store.commit_batch(fresh)
    store.mark_forwarded([e.eid for e in fresh[:2500]])
    report = store.maintain()
    depth = store.depth()
    assert depth["pending"] == 1000 + 500  # every unforwarded event is still there
    assert report["pruned"] >= 2000  # all expired forwarded ones, then oldest recent ones
    assert store.size_bytes() <= 0.9 * 1_000_000 or depth["forwarded"] == 0


def test_prune_alerts_when_only_pending_events_fill_the_store(tmp_path):
    store = Store(tmp_path / "g.db", max_bytes=1_000_000, disk_alert_free_bytes=10**18)
    big = [Accepted(**{**ev("d1", i).__dict__, "raw": os.urandom(1000)}) for i in range(1, 1500)]
    store.commit_batch(big)
    report = store.maintain()
    assert report["pruned"] == 0 and store.depth()["pending"] == 1499
    assert "store_full" in report["alerts"] and "disk_low" in report["alerts"]


def test_read_api_for_the_status_page(tmp_path):
    store = Store(tmp_path / "g.db")
    store.commit_batch(
        [
            ev("d1", 1, lane="lane-1"),
            ev("d1", 2, lane="lane-1", reason="expired"),
            ev("d2", 1, lane="lane-2"),
        ],
        [Rejected("bad_signature", "forged", "d3")],
        statuses=[("d1", "online"), ("d2", "offline")],
        heartbeats=[("d1", {"t": 1, "fps": 10, "clock": "synced", "outbox_depth": 0})],
    )
    feed = store.recent_decisions()
    assert [d.seq for d in feed] == [1, 2, 1] and feed[0].id < feed[1].id < feed[2].id
    assert store.recent_decisions(after_id=feed[1].id) == feed[2:]
    assert store.lane_counters(0) == {"lane-1": {"ok": 1, "expired": 1}, "lane-2": {"ok": 1}}
    assert sum(n for _, _, n in store.scans_per_minute(0)) == 3
    load = store.lane_load({"lane-1": 1, "lane-2": 10}, window_s=60)
    assert load["lane-1"]["scans"] == 2 and load["lane-1"]["utilisation"] == 2.0
    assert load["lane-1"]["queue_estimate"] == 1.0
    assert store.reject_counts() == {"bad_signature": 1}
    assert store.recent_rejects()[0]["device"] == "d3"
    devices = {d.dev: d for d in store.devices()}
    assert devices["d1"].online and devices["d1"].heartbeat["fps"] == 10
    assert "heartbeat_stale" not in device_alerts(devices["d1"], now_ms())
    assert "offline" in device_alerts(devices["d2"], now_ms())
    assert store.ingest_rate(60) == 3 / 60
    store.add_audit("op1", "login")
    assert store.audit_log()[0]["action"] == "login"


def test_the_gateway_itself_is_not_listed_as_a_scanner(tmp_path):
    from nacl.signing import SigningKey

    from gateway.manual import GatewaySigner

    store = Store(tmp_path / "gateway.db", own_id="gw1")
    GatewaySigner(store, SigningKey.generate(), "gw1", "SITE-01").record_load({"lane-1": 12}, 60)
    store.commit_batch([], statuses=[("d01", "online")])
    assert [d.dev for d in store.devices()] == ["d01"]
    assert store.event_count() == 1  # the load event itself is kept and forwarded


def test_device_facts_become_alerts_at_the_named_thresholds(tmp_path):
    from gateway.web.alerts import HEARTBEAT_STALE_MS, OUTBOX_BACKLOG_ALERT

    store = Store(tmp_path / "g.db")
    beats = {"d1": OUTBOX_BACKLOG_ALERT, "d2": OUTBOX_BACKLOG_ALERT + 1}
    store.commit_batch(
        [],
        statuses=[("d1", "online"), ("d2", "online")],
        heartbeats=[(d, {"clock": "synced", "outbox_depth": n}) for d, n in beats.items()],
        received_ms=1_000_000,
    )
    devices = {d.dev: d for d in store.devices()}
    assert devices["d1"].heartbeat_ms == 1_000_000
    assert device_alerts(devices["d1"], 1_000_000) == []
    assert device_alerts(devices["d2"], 1_000_000) == ["outbox_backlog"]
    late = 1_000_000 + HEARTBEAT_STALE_MS + 1
    assert device_alerts(devices["d1"], late) == ["heartbeat_stale"]
