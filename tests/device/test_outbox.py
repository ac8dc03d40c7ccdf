"""outbox.py on a real SQLite file: seq persistence, acks, the full policy, disk full."""

import sqlite3

import pytest
from nacl.signing import SigningKey

from device.documents_store import DocumentStore
from device.outbox import Outbox, OutboxFull
from protocol.events import open_event
from protocol.reasons import ProtocolError, Reason
from protocol.trust import root_keyring
from tests.support.device_pipeline import Pki

KEY = SigningKey.generate()


def fields(i: int = 0) -> dict:
    return {
        "typ": "scan",
        "t_ms": 1_700_000_000_000 + i,
        "clock": "synced",
        "verdict": "pass",
        "reason": "ok",
        "lane": "lane-1",
        "ref": bytes(16),
        "dec_us": 300,
        "ver_us": 80,
    }


def open_box(tmp_path, **kw) -> Outbox:
    kw.setdefault("group_commit_s", 0)
    return Outbox(tmp_path / "outbox.db", "hn01-lane1", "HN-01", KEY, **kw)


def test_append_signs_with_device_key_and_seq_survives_reopen(tmp_path):
    box = open_box(tmp_path)
    seqs = [box.append(fields(i))[0] for i in range(3)]
    assert seqs == [1, 2, 3]
    _, signed = box.append(fields(3))
    event = open_event(signed, {"hn01-lane1": bytes(KEY.verify_key)}.get).event
    assert (event.seq, event.dev, event.site, event.verdict) == (4, "hn01-lane1", "HN-01", "pass")
    box.ack(4)  # every row gone: the next seq must still be 5
    box.close()

    box = open_box(tmp_path)
    assert (box.depth, box.last_seq, box.acked_seq) == (0, 4, 4)
    assert box.append(fields())[0] == 5
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_pending_in_order_and_ack_frees_rows(tmp_path):
    box = open_box(tmp_path)
    for i in range(10):
        box.append(fields(i))
    assert [r.seq for r in box.pending(after_seq=0, limit=4)] == [1, 2, 3, 4]
    assert [r.seq for r in box.pending(after_seq=7)] == [8, 9, 10]
    box.mark_sent_through(5)
    assert box.count_sent() == 5
    assert box.ack(6) == 6
    assert box.depth == 4
    assert box.ack(3) == 0  # an old ack changes nothing
    assert box.ack(99) == 4  # beyond last seq: clamped, nothing invented
    assert (box.depth, box.acked_seq) == (0, 10)
    assert box.pending() == []


def test_soft_bound_alarms_but_keeps_recording(tmp_path):
    box = open_box(tmp_path, max_events=10)
    for i in range(15):
        box.append(fields(i))
    assert box.full and box.depth == 15  # nothing dropped
    box.ack(6)
    assert not box.full


def test_disk_full_raises_and_recovers_after_ack(tmp_path):
    box = open_box(tmp_path, max_db_bytes=64 * 1024)  # max_page_count emulates a full disk
    appended = 0
    with pytest.raises(OutboxFull) as info:
        for i in range(10_000):
            box.append(fields(i))
            appended += 1
    assert info.value.reason == "disk_full"
    assert appended > 20
    assert box.last_seq == appended and box.depth == appended  # the failed one left no gap
    box.ack(appended)
    seq, _ = box.append(fields())
    assert seq == appended + 1  # contiguous: the refused event did not consume a seq


def test_document_store_refuses_rollback_and_persists_newest(tmp_path):
    pki = Pki()
    keys = root_keyring([bytes(pki.root.verify_key)])
    store = DocumentStore(tmp_path, keys, "hn01-lane1")
    assert store.offer("trust", pki.trust_list(version=2)).adopted
    same = store.current("trust").raw
    assert not store.offer("trust", same).adopted  # the very same document: nothing to do
    with pytest.raises(ProtocolError) as info:
        store.offer("trust", pki.trust_list(version=1))
    assert info.value.reason is Reason.ROLLBACK
    forged = Pki().trust_list(version=9)  # signed by another root
    with pytest.raises(ProtocolError):
        store.offer("trust", forged)
    again = DocumentStore(tmp_path, keys, "hn01-lane1")
    assert again.trust_list().version == 2
    assert again.offer_file("trust", _write(tmp_path / "bundle.cose", pki.trust_list(1))) is None


def _write(path, data):
    path.write_bytes(data)
    return path


def test_app_keeps_deciding_when_the_outbox_cannot_record(tmp_path, monkeypatch):
    """Disk full: lights still work, the loss is counted and reported in the next event."""
    from device.app import DeviceApp
    from device.gpio import SimulatedBackend
    from tests.support.device_pipeline import QueueSource, device_public_key, write_device

    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    pki = Pki()
    config = write_device(tmp_path, pki, outbox={"max_events": 10})
    backend, source = SimulatedBackend(), QueueSource()
    app = DeviceApp(config, source=source, backend=backend, connect=False)
    try:
        for i in range(12):  # past the soft bound: still recorded, alarm raised
            app.handle_text(pki.make_pass(i))
        assert app.outbox.depth == 12 and app.health_snapshot()["outbox_full"]
        app.run_for(frames=1)
        assert app.state == "outbox_full"
        app.outbox.ack(12)

        pages = app.outbox._db.execute("PRAGMA page_count").fetchone()[0]
        app.outbox._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
        texts = (pki.make_pass(100 + i) for i in range(500))
        while app.stats.unrecorded == 0:  # the free space left in the last pages runs out
            d = app.handle_text(next(texts))
        recorded = app.outbox.last_seq
        for _ in range(2):
            d = app.handle_text(next(texts))
        assert d.publish and d.signal and d.reason is Reason.OK  # still decided and shown
        assert (app.stats.unrecorded, app.outbox.last_seq) == (3, recorded)
        snap = app.health_snapshot()
        assert snap["unrecorded"] == 3 and snap["outbox_full"]
        assert any(t.name == "green" and t.state for t in backend.history)

        app.outbox._db.execute("PRAGMA max_page_count=1000000")  # space is back
        app.handle_text(pki.make_pass(200))
        app.outbox.sync()  # the group commit, as the uplink's next pending() would
        row = app.outbox.pending(after_seq=recorded)[0]
        keys = {"hn01-lane1": device_public_key(tmp_path)}
        event = open_event(row.signed, keys.get).event
        assert (event.seq, event.extra) == (recorded + 1, {"unrecorded": 3})
        app.outbox.ack(app.outbox.last_seq)  # the gateway caught up: alarm clears
        assert not app.health_snapshot()["outbox_full"]
    finally:
        app.close()


def test_an_outbox_from_before_epochs_gets_one_and_its_rows_are_resigned(tmp_path):
    """Issue #13: the gateway acks only events that carry their outbox epoch. An outbox
    written before epochs (rows without `ep`, no epoch in meta) gets an epoch when opened and
    every row left is re-signed under it with its eid and seq kept, so nothing stays stuck."""
    from dataclasses import replace

    from protocol import cose
    from protocol.events import parse_event_payload, sign_event

    box = open_box(tmp_path)
    for i in range(3):
        box.append(fields(i))
    box.ack(1)
    box.close()
    db = sqlite3.connect(tmp_path / "outbox.db")
    before = {}
    for seq, signed in db.execute("SELECT seq, signed FROM events").fetchall():
        event = parse_event_payload(cose.parse_sign1(signed).payload)
        legacy = sign_event(replace(event, ep=None), KEY)  # as an older unit signed it
        db.execute("UPDATE events SET signed=? WHERE seq=?", (legacy, seq))
        before[seq] = event.eid
    db.execute("DELETE FROM meta WHERE key='epoch'")
    db.commit()
    db.close()

    box = open_box(tmp_path)
    assert box.epoch >= 1
    rows = box.pending(limit=10)
    assert [row.seq for row in rows] == [2, 3]
    for row in rows:
        event = open_event(row.signed, lambda dev: bytes(KEY.verify_key)).event
        assert (event.ep, event.eid, event.seq) == (box.epoch, before[row.seq], row.seq)
    seq, _ = box.append(fields(9))
    assert seq == 4
    epoch = box.epoch
    box.close()
    assert open_box(tmp_path).epoch == epoch  # chosen once


def test_group_commit_waits_for_time_or_a_block_of_rows(tmp_path):
    """Rows are handed out only once synced: after group_commit_s, or as soon as SYNC_ROWS
    rows wait (a busy lane does not wait for the clock), never before."""
    from device.outbox import SYNC_ROWS

    now = [100.0]
    box = open_box(tmp_path, group_commit_s=3.0, monotonic=lambda: now[0])
    for i in range(SYNC_ROWS - 1):
        box.append(fields(i))
    assert box.pending() == [] and not box.maybe_sync()  # neither the time nor the rows yet
    box.append(fields(SYNC_ROWS))
    assert [row.seq for row in box.pending()] == list(range(1, SYNC_ROWS + 1))
    syncs = box.syncs
    box.append(fields(99))
    assert box.pending(after_seq=SYNC_ROWS) == []  # a lone row waits for the clock
    now[0] += 3.0
    assert [row.seq for row in box.pending(after_seq=SYNC_ROWS)] == [SYNC_ROWS + 1]
    assert box.syncs == syncs + 1
