"""Tracing answers while the leader cannot write, and is audited all the same (issue #18).

A store whose writes fail (its write DSN points at a closed port, or through a proxy we cut)
and whose reads go to the real PostgreSQL: `visits` answers within seconds with its entry in
the local spool; once writes come back the entry reaches access_log exactly once, however
often the spool is replayed. A spool that cannot be written refuses the query.
"""

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from central import audit, queries
from central.api import create_app
from central.audit import AccessEntry, AuditUnavailable
from central.backends import open_store
from central.ingest import ingest_batch
from central.migrate import migrate
from central.store import Store
from central.store_postgres import PostgresStore
from tests.central.fixtures import DAY, MIN, T0, Fleet, operator_headers, sub
from tests.central.server import free_port
from tests.central_ha.tcp_proxy import TcpProxy
from tests.support.postgres import reset_schema


@pytest.fixture
def pg(postgres_url: str, fleet: Fleet) -> Iterator[Store]:
    """The real server, migrated, with two visits of subject 1 and one of subject 2."""
    reset_schema(postgres_url)
    with open_store(postgres_url) as store:
        migrate(store)
        items = [
            fleet.scan("dev-a", T0 + 10 * MIN, 1),
            fleet.scan("dev-b", T0 + 20 * MIN, 2),
            fleet.scan("dev-a", T0 + 3 * 60 * MIN, 1),
        ]
        result = ingest_batch(items, fleet.registry.signers["gw-hn"], fleet.registry, store, T0)
        assert len(result.stored) == 3
        yield store


def _at_port(url: str, port: int) -> str:
    return make_conninfo(url, port=str(port))


@pytest.fixture
def cut_off(postgres_url: str, pg: Store) -> Iterator[PostgresStore]:
    """Reads from the real server; writes to a port nobody listens on (no leader)."""
    with PostgresStore(_at_port(postgres_url, free_port()), read_url=postgres_url) as store:
        yield store


def _access_log(store: Store) -> list[dict]:
    return store.fetch("SELECT entry_id, operator, role, via, query, params FROM access_log")


def test_visits_answer_from_reads_while_writes_fail_audited_in_the_spool(
    pg: Store, cut_off: PostgresStore, tmp_path: Path
) -> None:
    spool_path = tmp_path / "state" / "audit-spool.jsonl"
    trail = audit.attach(cut_off, spool_path)
    started = time.monotonic()
    rows = queries.visits(cut_off, sub(1), T0, T0 + DAY, operator="dr-lan", role="tracer")
    answered_s = time.monotonic() - started
    assert [(r["t"], r["dev"]) for r in rows] == [
        (T0 + 10 * MIN, "dev-a"),
        (T0 + 180 * MIN, "dev-a"),
    ]
    assert answered_s < 4, f"visits took {answered_s:.1f} s with no leader"
    contacts = queries.contacts(cut_off, sub(1), 30, T0, T0 + DAY, operator="dr-lan")
    assert [c["sub"] for c in contacts] == [sub(2).hex()]

    spooled = trail.spool.read().entries
    assert [(e.query, e.operator, e.via, e.row_count) for e in spooled] == [
        ("visits", "dr-lan", "cli", 2),
        ("contacts", "dr-lan", "cli", 1),
    ]
    assert spooled[0].role == "tracer"
    assert json.loads(spooled[0].params) == {"sub": sub(1).hex(), "from": T0, "to": T0 + DAY}
    assert len({e.entry_id for e in spooled}) == 2
    assert stat.S_IMODE(spool_path.stat().st_mode) == 0o600
    assert _access_log(pg) == []  # nothing reached the database

    # writes come back: the spool is replayed into access_log and emptied after the commit
    saved = spool_path.read_bytes()
    back = audit.attach(pg, spool_path)
    assert back.replay() == 2
    logged = _access_log(pg)
    assert sorted(r["entry_id"] for r in logged) == sorted(e.entry_id for e in spooled)
    assert {(r["query"], r["operator"], r["via"]) for r in logged} == {
        ("visits", "dr-lan", "cli"),
        ("contacts", "dr-lan", "cli"),
    }
    assert not back.spool.pending()

    # a crash between the commit and emptying the spool: the same lines again, twice
    spool_path.write_bytes(saved)
    assert back.replay() == 2
    spool_path.write_bytes(saved)
    assert back.replay() == 2
    assert len(_access_log(pg)) == 2
    assert not back.spool.pending()


def test_the_next_successful_audit_write_brings_the_spool_over(
    pg: Store, cut_off: PostgresStore, tmp_path: Path
) -> None:
    spool_path = tmp_path / "audit-spool.jsonl"
    audit.attach(cut_off, spool_path)
    queries.visits(cut_off, sub(2), T0, T0 + DAY, operator="dr-lan")
    assert _access_log(pg) == []
    audit.attach(pg, spool_path)
    queries.visits(pg, sub(1), T0, T0 + DAY, operator="dr-minh")
    assert sorted(r["operator"] for r in _access_log(pg)) == ["dr-lan", "dr-minh"]
    assert spool_path.read_bytes() == b""


def test_the_spool_replays_by_itself_once_the_leader_is_back(
    postgres_url: str, pg: Store, tmp_path: Path
) -> None:
    proxy = TcpProxy(
        int(conninfo_to_dict(postgres_url)["port"])
    ).start()  # the writes' road to the leader, which we cut
    try:
        url = _at_port(postgres_url, proxy.port)
        with PostgresStore(url, read_url=postgres_url) as store:
            trail = audit.attach(store, tmp_path / "audit-spool.jsonl")
            queries.visits(store, sub(1), T0, T0 + DAY, operator="dr-lan")  # connected
            assert len(_access_log(pg)) == 1
            proxy.cut()
            started = time.monotonic()
            rows = queries.visits(store, sub(1), T0, T0 + DAY, operator="dr-lan")
            assert len(rows) == 2 and time.monotonic() - started < 4
            assert len(trail.spool.read().entries) == 1
            proxy.heal()
            deadline = time.monotonic() + 15
            while trail.spool.pending() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not trail.spool.pending(), "the background replay did not empty the spool"
            assert len(_access_log(pg)) == 2
    finally:
        proxy.stop()


@pytest.mark.parametrize("where", ["disk full", "not a directory"])
def test_an_unwritable_spool_refuses_the_query(
    pg: Store, cut_off: PostgresStore, tmp_path: Path, where: str
) -> None:
    if where == "disk full":
        spool_path = Path("/dev/full")  # every write: ENOSPC
    else:
        (tmp_path / "state").write_text("a file where the state folder should be")
        spool_path = tmp_path / "state" / "audit-spool.jsonl"
    audit.attach(cut_off, spool_path)
    with pytest.raises(AuditUnavailable, match="audit spool") as refused:
        queries.visits(cut_off, sub(1), T0, T0 + DAY, operator="dr-lan")
    assert "no database leader" in str(refused.value)
    assert _access_log(pg) == []


def test_replay_is_idempotent_on_both_backends(store: Store, tmp_path: Path) -> None:
    trail = audit.attach(store, tmp_path / "audit-spool.jsonl")
    entry = AccessEntry.new("dr-lan", "api", "visits", {"sub": "00"}, 3, "tracer")
    trail.spool.append(entry)
    trail.spool.append(entry)  # the same entry twice: kept once
    assert trail.replay() == 2
    trail.spool.append(entry)
    assert trail.replay() == 1
    rows = store.fetch("SELECT entry_id, role, row_count FROM access_log")
    assert rows == [{"entry_id": entry.entry_id, "role": "tracer", "row_count": 3}]
    # a normal audit write carries its own id as well
    queries.log_access(store, "dr-minh", "cli", "stats", {}, 1, "report")
    ids = [r["entry_id"] for r in store.fetch("SELECT entry_id FROM access_log")]
    assert len(ids) == 2 and all(ids) and len(set(ids)) == 2


def test_a_torn_last_line_is_skipped_and_the_rest_replayed(store: Store, tmp_path: Path) -> None:
    trail = audit.attach(store, tmp_path / "audit-spool.jsonl")
    entry = AccessEntry.new("dr-lan", "api", "visits", {"sub": "00"}, 0, None)
    trail.spool.append(entry)
    with trail.spool.path.open("ab") as file:  # a crash in the middle of an append
        file.write(entry.to_line()[:20])
    assert trail.replay() == 1
    assert [r["entry_id"] for r in store.fetch("SELECT entry_id FROM access_log")] == [
        entry.entry_id
    ]
    assert not trail.spool.pending()


def test_the_api_refuses_with_503_when_neither_leader_nor_spool_takes_the_entry(
    pg: Store, cut_off: PostgresStore, fleet: Fleet
) -> None:
    audit.attach(cut_off, Path("/dev/full"))
    app = create_app(fleet.config(cut_off.url), cut_off)
    with TestClient(app) as client:
        resp = client.get(
            "/api/v1/visits", params={"sub": sub(1).hex()}, headers=operator_headers("tracer")
        )
    assert resp.status_code == 503
    assert resp.json()["reason"] == "audit_unavailable"
    assert "dev-a" not in resp.text  # no rows leak with the refusal
    assert _access_log(pg) == []
