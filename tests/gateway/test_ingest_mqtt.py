"""Ingest against a real Mosquitto (password + ACL): simulated scanners publish signed events;
the gateway stores each once, acks end to end, rejects bad input with the right reason, detects
sequence gaps, survives kill -9 mid-burst, and a gateway pair does not double-store centrally."""

import json
import os
import signal
import sqlite3
import time

import pytest

from gateway.app import GatewayApp
from gateway.config import parse_config
from protocol import topics
from protocol.status import Heartbeat, encode_heartbeat
from tests.support.central_stub import CentralStub
from tests.support.gateway_core import (
    ACL,
    SITE,
    USERS,
    Scanner,
    Site,
    TopicReader,
    make_event,
    start_gateway_process,
    wait_for,
    wait_gateways_online,
)

BEAT = Heartbeat(
    t=1,
    state="idle",
    seq=20,
    outbox_depth=0,
    outbox_full=False,
    unrecorded=0,
    fps=9,
    decoder_ms=1.5,
    clock="synced",
    trust_version=None,
)


@pytest.fixture
def broker(mosquitto):
    return mosquitto(users=USERS, acl=ACL)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site", devices=3)


@pytest.fixture
def central(tmp_path, site):
    stub = CentralStub(
        tmp_path / "central.db", {"gw-a": "tok-a", "gw-b": "tok-b"}, key_for=site.key_for
    ).start()
    yield stub
    stub.stop()


def count_rows(db_path, sql="SELECT COUNT(*) FROM events") -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_events_from_several_devices_are_stored_once_acked_and_forwarded(broker, site, central):
    app = GatewayApp(parse_config(site.config(broker, central_url=central.url))).start()
    scanner = Scanner(broker)
    try:
        assert app.ready.wait(10)
        sent = {}
        for seq in range(1, 21):
            for dev in ("d01", "d02", "d03"):
                raw, event = make_event(site.keys[dev], dev, seq)
                sent[event.eid] = raw
                scanner.publish(dev, raw)
        scanner.raw(topics.status_topic(SITE, "d01"), json.dumps({"state": "online", "t": 1}))
        scanner.raw(
            topics.heartbeat_topic(SITE, "d01"),
            encode_heartbeat(BEAT),  # the whole contract: a partial heartbeat is refused
            qos=0,
        )
        acks = scanner.wait_acks({"d01": 20, "d02": 20, "d03": 20})
        assert acks == {"d01": 20, "d02": 20, "d03": 20}
        assert app.store.event_count() == 60
        assert wait_for(lambda: central.stored_eids() == set(sent), timeout=15)
        assert wait_for(lambda: app.store.depth()["forwarded"] == 60)
        assert max(central.outcome_counts("stored").values()) == 1
        d01 = next(
            d
            for d in wait_for(lambda: [d for d in app.store.devices() if d.online])
            if d.dev == "d01"
        )
        assert d01.heartbeat["fps"] == 9 and d01.contiguous == 20
        health = app.health()
        assert health["mqtt_connected"] and health["store_depth"]["pending"] == 0
        assert health["forward_lag_s"] == 0 and health["rejects"] == {}
    finally:
        scanner.close()
        app.stop()


def test_bad_inputs_are_rejected_with_their_reason_and_the_loop_goes_on(broker, site):
    ghost = site.add_device("d77")  # revoked below, after the gateway loaded the registry
    site.save_registry()
    app = GatewayApp(parse_config(site.config(broker))).start()
    scanner = Scanner(broker)
    try:
        assert app.ready.wait(10)
        good, _ = make_event(site.keys["d01"], "d01", 1)
        scanner.publish("d01", good)
        forged, _ = make_event(site.keys["d02"], "d01", 2)  # d01's name, d02's key
        scanner.publish("d01", forged)
        scanner.publish("d01", b"\xa1garbage")  # malformed
        scanner.publish("d01", good)  # replay of the same event id
        mismatch, _ = make_event(site.keys["d02"], "d02", 1)
        scanner.publish("d02", mismatch, topic_dev="d01")  # valid event, wrong topic
        unknown_key = site.add_device("d88")  # signs, but not in the saved registry file
        stray, _ = make_event(unknown_key, "d88", 1)
        scanner.publish("d88", stray)
        wrong_site, _ = make_event(site.keys["d03"], "d03", 1, site="HN-02")
        scanner.publish("d03", wrong_site)
        scanner.raw(topics.heartbeat_topic(SITE, "d02"), b"{not json", qos=0)
        # out of order and a gap: d03 sends 3, 1, 2, then 6 (4 and 5 missing)
        for seq in (3, 1, 2, 6):
            scanner.publish("d03", make_event(site.keys["d03"], "d03", seq)[0])
        assert scanner.wait_acks({"d01": 1, "d03": 3})["d03"] == 3
        want = {"bad_signature": 1, "bad_cbor": 1, "topic_mismatch": 2, "unknown_device": 1}
        rejects = wait_for(
            lambda: (
                app.store.reject_counts() == {**want, "bad_heartbeat": 1}
                and app.store.reject_counts()
            )
        )
        assert rejects == {**want, "bad_heartbeat": 1}
        assert wait_for(lambda: app.store.counters().get("duplicate") == 1)
        assert app.store.event_count() == 5  # d01:1, d03:1,2,3,6
        gaps = wait_for(app.store.open_gaps)
        assert [(g["device"], g["missing"]) for g in gaps] == [("d03", [4, 5])]
        assert "sequence_gaps" in app.health()["alerts"]
        # the late events arrive: the gap closes and the ack jumps to 6
        for seq in (5, 4):
            scanner.publish("d03", make_event(site.keys["d03"], "d03", seq)[0])
        assert scanner.wait_acks({"d03": 6})["d03"] == 6
        assert app.store.open_gaps() == []
        # a device revoked in the registry file: picked up without a restart
        scanner.publish("d77", make_event(ghost, "d77", 1)[0])
        assert scanner.wait_acks({"d77": 1})["d77"] == 1
        site.registry.revoke("d77")
        site.save_registry()
        os.utime(site.dir / "registry.json", (time.time() + 5, time.time() + 5))
        # re-read within registry_check_s = 0.5: d77 has no active key any more
        assert wait_for(lambda: app.registry.registry.key_for("d77") is None)
        scanner.publish("d77", make_event(ghost, "d77", 2)[0])
        assert wait_for(lambda: app.store.reject_counts().get("device_revoked") == 1)
        assert app.ingest.totals["stored"] == 8
    finally:
        scanner.close()
        app.stop()


def test_kill_9_mid_burst_loses_nothing_acknowledged_and_stores_nothing_twice(
    broker, site, tmp_path
):
    config = site.write_config(site.config(broker))
    db_path = site.dir / "state-gw-a" / "gateway.db"
    log_path = tmp_path / "gateway.log"
    proc = start_gateway_process(config, log_path)
    scanner = Scanner(broker)
    try:
        assert wait_gateways_online(broker, ["gw-a"])  # subscribed: its session keeps events
        n_per_device = 1000
        sent: dict[bytes, tuple[str, int]] = {}
        raws: dict[tuple[str, int], bytes] = {}
        for seq in range(1, n_per_device + 1):
            for dev in ("d01", "d02", "d03"):
                raw, event = make_event(site.keys[dev], dev, seq)
                sent[event.eid] = (dev, seq)
                raws[(dev, seq)] = raw
                scanner.publish(dev, raw)
            if seq == 300:  # mid-burst: some committed, some in flight, some still queued
                assert wait_for(lambda: count_rows(db_path) > 100, 10)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        acked_before = dict(scanner.acks)
        stored_before = count_rows(db_path)
        assert 0 < stored_before < len(sent)
        proc = start_gateway_process(config, log_path)  # same client id: broker redelivers
        total = len(sent)
        assert wait_for(lambda: count_rows(db_path) == total, 40), count_rows(db_path)
        # a signed ack names exactly what one batch committed: those the kill cut off are
        # named again when the unit republishes after its ack timeout, as a real unit does
        scanner.wait_quiet(1.0)
        for (dev, seq), raw in raws.items():
            if seq not in scanner.named(dev):
                scanner.publish(dev, raw)
        acks = scanner.wait_acks({d: n_per_device for d in ("d01", "d02", "d03")})
        assert acks == {"d01": n_per_device, "d02": n_per_device, "d03": n_per_device}
        with sqlite3.connect(db_path) as db:
            rows = db.execute("SELECT eid, dev, seq FROM events").fetchall()
            distinct = db.execute("SELECT COUNT(DISTINCT dev || ':' || seq) FROM events").fetchone()
        assert {r[0]: (r[1], r[2]) for r in rows} == sent  # all there, each eid once
        assert distinct[0] == total  # and no (device, seq) twice
        for dev, seq in acked_before.items():  # what was acked before the kill is stored
            assert all((dev, s) in {(r[1], r[2]) for r in rows} for s in range(1, seq + 1))
    finally:
        scanner.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_gateway_pair_shares_events_and_central_stores_each_once(broker, site, central, tmp_path):
    configs = {
        gw: site.write_config(
            site.config(broker, gw=gw, central_url=central.url, shared_group="pair"), f"{gw}.toml"
        )
        for gw in ("gw-a", "gw-b")
    }
    dbs = {gw: site.dir / f"state-{gw}" / "gateway.db" for gw in configs}
    procs = {gw: start_gateway_process(cfg, tmp_path / f"{gw}.log") for gw, cfg in configs.items()}
    scanner = Scanner(broker)
    try:
        assert wait_gateways_online(broker, list(configs))
        sent: dict[bytes, tuple[str, bytes]] = {}
        per_device: dict[str, list[bytes]] = {"d01": [], "d02": [], "d03": []}
        for seq in range(1, 301):
            for dev in per_device:
                raw, event = make_event(site.keys[dev], dev, seq)
                sent[event.eid] = (dev, raw)
                per_device[dev].append(raw)
                scanner.publish(dev, raw)
            if seq == 100:
                assert wait_for(lambda: count_rows(dbs["gw-a"]) > 20, 10)
                os.kill(procs["gw-a"].pid, signal.SIGKILL)  # one of the pair dies mid-burst
                procs["gw-a"].wait(5)
        # A device outbox resends whatever was not acked end to end, until it is. Mosquitto
        # may still route some to the dead member's session: those wait there, so resend.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            scanner.acks.get(dev, 0) < 300 for dev in per_device
        ):
            time.sleep(1.0)
            for dev, raws in per_device.items():
                for raw in raws[scanner.acks.get(dev, 0) :]:
                    scanner.publish(dev, raw)
        assert scanner.acks == {d: 300 for d in per_device}
        # all of it reached central, except what the dead member had stored (and acked) but not
        # yet marked forwarded: that waits, durable, in its own store (some of it may have
        # reached central just before the kill)
        held_by_dead = {
            row[0]
            for row in sqlite3.connect(dbs["gw-a"]).execute(
                "SELECT eid FROM events WHERE state='pending'"
            )
        }
        assert wait_for(lambda: central.stored_eids() >= set(sent) - held_by_dead, 30)
        assert central.stored_eids() <= set(sent)
        # the dead gateway comes back and forwards what it holds: central absorbs duplicates
        procs["gw-a"] = start_gateway_process(configs["gw-a"], tmp_path / "gw-a.log")
        assert wait_for(
            lambda: (
                count_rows(dbs["gw-a"], "SELECT COUNT(*) FROM events WHERE state='pending'") == 0
            ),
            20,
        )
        stored = central.outcome_counts("stored")
        assert set(stored) == set(sent) and set(stored.values()) == {1}
        assert count_rows(dbs["gw-b"]) > 0 and count_rows(dbs["gw-a"]) > 0
        gateways = {row[1] for row in central.events()}
        assert gateways == {"gw-a", "gw-b"}
    finally:
        scanner.close()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)


def test_distribution_publishes_verified_documents_retained_and_refuses_rollback(broker, site):
    from nacl.signing import SigningKey

    from protocol.documents import sign_document
    from protocol.reasons import ProtocolError
    from protocol.trust import sign_revocation_list, sign_trust_list

    docs = site.dir / "documents"
    docs.mkdir()
    trust_v2 = sign_trust_list(
        [], version=2, issued_at=1, expires_at=2_000_000_000, root_key=site.root
    )
    (docs / "trust.cbor").write_bytes(trust_v2)
    app = GatewayApp(parse_config(site.config(broker, documents_dir=str(docs)))).start()
    try:
        assert app.ready.wait(10)
        reader = TopicReader(broker, ["chot/v1/#"])
        seen = reader.seen
        assert wait_for(lambda: seen.get(topics.trust_topic(SITE)) == trust_v2)  # retained
        dist = app.distributor
        revs = sign_revocation_list(
            pass_refs=[b"\x01" * 16],
            kids=[],
            devices=["d09"],
            version=1,
            issued_at=1,
            expires_at=2_000_000_000,
            root_key=site.root,
        )
        assert dist.offer(revs).changed
        config_doc = sign_document(
            "chot-config", 1, 1, 2_000_000_000, {"device": "d01", "lane": "lane-1"}, site.root
        )
        assert dist.offer(config_doc).topic == topics.config_topic(SITE, "d01")
        assert wait_for(lambda: seen.get(topics.config_topic(SITE, "d01")) == config_doc)
        assert wait_for(lambda: seen.get(topics.revocations_topic(SITE)) == revs)
        trust_v1 = sign_trust_list(
            [], version=1, issued_at=1, expires_at=2_000_000_000, root_key=site.root
        )
        with pytest.raises(ProtocolError, match="rollback"):
            dist.offer(trust_v1)
        forged = sign_trust_list(
            [], version=9, issued_at=1, expires_at=2_000_000_000, root_key=SigningKey.generate()
        )
        with pytest.raises(ProtocolError, match="unknown_kid"):
            dist.offer(forged)
        assert dist.offer(trust_v2).changed is False  # the same document again: nothing to do
        assert seen[topics.trust_topic(SITE)] == trust_v2
        assert [d["version"] for d in app.store.documents()] == [1, 1, 2]
        reader.close()
    finally:
        app.stop()
    # a restart republishes what the store holds, even if the broker lost its retained state
    broker.kill()
    import shutil

    shutil.rmtree(broker.workdir / "data")
    (broker.workdir / "data").mkdir()
    broker.start()
    app = GatewayApp(parse_config(site.config(broker))).start()
    try:
        assert app.ready.wait(10)
        reader = TopicReader(broker, ["chot/v1/+/trust"], "reader2")
        got = reader.seen
        assert wait_for(lambda: got.get(topics.trust_topic(SITE)) == trust_v2)
        reader.close()
    finally:
        app.stop()
