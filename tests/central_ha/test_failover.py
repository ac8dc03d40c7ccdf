"""The central store survives losing a machine (issue #18), with real processes throughout:
etcd, Patroni, PostgreSQL, the central API and two gateways' forwarders (tests/central_ha/rig.py).
"""

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from central import queries
from central.store_postgres import PostgresStore, partition_name
from tests.central_ha.rig import HaRig, rig, wait_until

TOTAL = 20_000


@pytest.fixture
def ha() -> Iterator[HaRig]:
    yield from rig()


@pytest.fixture
def ha_proxied() -> Iterator[HaRig]:
    yield from rig(proxied=True)


def _assert_exactly_once(ha: HaRig, failover_s: float | None) -> None:
    outcome = ha.outcome(failover_s)
    assert outcome.events_sent == TOTAL
    assert outcome.events_stored == TOTAL
    assert outcome.missing == 0  # per-device (dev, seq) accounting and every eid sent
    assert outcome.duplicates == 0


@pytest.mark.slow
def test_leader_killed_mid_stream_promotes_a_standby_and_loses_nothing(ha: HaRig) -> None:
    ha.start_gateways()
    ha.feed(TOTAL)
    ha.wait_confirmed(TOTAL // 3, timeout_s=120)
    old, killed_at = ha.kill_leader()
    ha.wait_confirmed(TOTAL, timeout_s=240)
    failover_s = ha.failover_s(old, killed_at)
    assert failover_s is not None and failover_s < 30, failover_s
    new = ha.leader()
    assert new.name != old.name
    _assert_exactly_once(ha, failover_s)
    # the old leader comes back as a replica of the new timeline (pg_rewind via Patroni)
    ha.cluster.start_node(old)
    wait_until(lambda: ha.cluster.replicated(), 120, f"{old.name} to rejoin")
    assert ha.node_role(old.name) in ("replica", "sync_standby")
    wait_until(lambda: ha.count_on(old) == TOTAL, 60, f"{old.name} to catch up")


@pytest.mark.slow
def test_leader_and_its_etcd_member_killed_together(ha: HaRig) -> None:
    ha.start_gateways()
    ha.feed(TOTAL)
    ha.wait_confirmed(TOTAL // 3, timeout_s=120)
    old, killed_at = ha.kill_leader(etcd=True)
    ha.wait_confirmed(TOTAL, timeout_s=240)
    failover_s = ha.failover_s(old, killed_at)
    assert failover_s is not None and failover_s < 30, failover_s
    _assert_exactly_once(ha, failover_s)
    ha.cluster.start_node(old, etcd=True)
    wait_until(lambda: ha.cluster.replicated(), 120, f"{old.name} to rejoin")


@pytest.mark.slow
def test_network_cut_between_leader_and_standbys_acks_nothing_single_copy(
    ha_proxied: HaRig,
) -> None:
    ha = ha_proxied
    ha.start_gateways()
    ha.feed(TOTAL, rate_per_s=1500)
    ha.wait_confirmed(TOTAL // 3, timeout_s=120)
    leader = ha.leader()
    ha.proxies[leader.index].cut()  # standbys can no longer stream from the leader
    cut_at = time.monotonic()
    time.sleep(10)
    # strict synchronous mode: once the walsenders are gone nothing is confirmed any more
    # (ingest answers 503 and the gateways keep their events)
    late = ha.commits.first_after(cut_at + 3)
    assert late is None, f"a batch was confirmed {late - cut_at:.1f} s into the cut"
    ha.proxies[leader.index].heal()
    ha.wait_confirmed(TOTAL, timeout_s=240)
    _assert_exactly_once(ha, None)


@pytest.mark.slow
def test_reports_answer_from_a_standby_while_the_leader_is_down(ha: HaRig) -> None:
    ha.start_gateways()
    ha.feed(2_000)
    ha.wait_confirmed(2_000, timeout_s=120)
    read_dsn = ha.layout.dsn("prefer-standby")
    with PostgresStore(read_dsn, read_url=read_dsn, failover_wait_s=5) as reader:
        wait_until(lambda: queries.stats(reader)["events_central"] == 2_000, 30, "replay")
        old, killed_at = ha.kill_leader()
        stats = queries.stats(reader)
        answered_s = time.monotonic() - killed_at
        # nobody promoted yet: the dead leader's key has not expired
        assert ha.cluster.leader() in (None, old.name)
        sub = bytes(16)  # subject 0 (rig events use subjects 0..4999)
        rows = reader.fetch(
            "SELECT count(*) AS n FROM events WHERE sub = :sub AND typ = 'scan'", {"sub": sub}
        )
    assert stats["events_central"] == 2_000 and stats["duplicates"] == 0
    assert rows[0]["n"] >= 1
    assert answered_s < 5


@pytest.mark.slow
def test_failover_during_retention_leaves_no_half_dropped_days(ha: HaRig) -> None:
    store = ha.store
    assert store is not None
    ha.start_gateways()
    # three old (empty) day partitions for retention to drop
    day_ms = 86_400_000
    old_days = [int(time.time() * 1000) // day_ms - 40 - i for i in range(3)]
    ha.feed(600)
    ha.wait_confirmed(600, timeout_s=60)
    with psycopg.connect(ha.layout.dsn(), autocommit=True) as conn:
        for day in old_days:
            name = partition_name(day)
            conn.execute(
                f"CREATE TABLE {name} PARTITION OF events "
                f"FOR VALUES FROM ({day * day_ms}) TO ({(day + 1) * day_ms})"
            )
    partitions_before = _partitions(ha)
    blocker = psycopg.connect(ha.layout.dsn())
    blocker.execute(f"LOCK TABLE {partition_name(old_days[1])} IN ACCESS SHARE MODE")
    outcome: dict = {}

    def retention() -> None:
        try:
            outcome["result"] = store.delete_days_before(old_days[0] + 1)
        except Exception as exc:  # the failover may outlast the store's retry window
            outcome["error"] = exc

    thread = threading.Thread(target=retention)
    thread.start()
    time.sleep(2)  # retention has dropped one day and waits for the locked one
    old, _ = ha.kill_leader()
    thread.join(120)
    ha.wait_new_leader(old)
    # the first attempt died with the old leader; whatever ran after is whole
    after = _partitions(ha)
    names = {partition_name(day) for day in old_days}
    assert names <= partitions_before
    assert after & names in (set(), names), "retention left some of its days half-dropped"


def _partitions(ha: HaRig) -> set[str]:
    with psycopg.connect(ha.layout.dsn()) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
        ).fetchall()
    return {r[0] for r in rows}
