"""Tracing keeps answering from a standby while the leader is down, and stays audited
(issue #18): real etcd, Patroni, PostgreSQL and the centre's HTTP API (tests/central_ha/rig.py).

With no leader nobody can take the access-log row, so the centre spools it locally
(central/audit.py) and answers from a standby within seconds; after the failover the row
reaches access_log on the new leader exactly once.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from central import audit
from tests.central.fixtures import operator_headers
from tests.central_ha.rig import HaRig, rig, wait_until


@pytest.fixture
def ha() -> Iterator[HaRig]:
    yield from rig()


def _visits(ha: HaRig, sub: bytes) -> httpx.Response:
    return httpx.get(
        f"{ha.url}/api/v1/visits",
        params={"sub": sub.hex()},
        headers=operator_headers("tracer"),
        timeout=60,
    )


@pytest.mark.slow
def test_tracing_answers_from_a_standby_while_the_leader_is_down_audited_after_failover(
    ha: HaRig, tmp_path: Path
) -> None:
    assert ha.store is not None
    trail = audit.attach(ha.store, tmp_path / "state" / "audit-spool.jsonl")
    ha.start_gateways()
    ha.feed(2_000)
    ha.wait_confirmed(2_000, timeout_s=120)
    sub = bytes(16)  # subject 0 (rig events use subjects 0..4999)
    before = _visits(ha, sub)
    assert before.status_code == 200 and len(before.json()) >= 1
    assert not trail.spool.pending()  # the leader took that one

    old, _ = ha.kill_leader()
    started = time.monotonic()
    during = _visits(ha, sub)
    answered_s = time.monotonic() - started
    # nobody promoted yet: the dead leader's key has not expired (ttl 15 s)
    assert ha.cluster.leader() in (None, old.name)
    assert during.status_code == 200, during.text
    assert len(during.json()) >= 1
    assert answered_s < 3.5, f"visits took {answered_s:.1f} s with the leader down"
    spooled = trail.spool.read().entries
    assert [(e.query, e.operator, e.via) for e in spooled] == [("visits", "tracer", "api")]

    ha.wait_new_leader(old)
    wait_until(lambda: not trail.spool.pending(), 90, "the audit spool replayed")
    with ha.leader_store() as leader:
        logged = leader.fetch(
            "SELECT entry_id, operator, query FROM access_log WHERE query = 'visits'"
        )
    assert spooled[0].entry_id in [r["entry_id"] for r in logged]
    assert len(logged) == 2  # the one before the kill and the spooled one, each once
    assert {(r["operator"], r["query"]) for r in logged} == {("tracer", "visits")}
