"""Schema migrations, retention and idempotent inserts at the store level, on both backends."""

import psycopg

from central.backends import open_store
from central.ingest import ingest_batch
from central.migrate import migrate, migrations_for
from central.store import DAY_MS, Store, day_of
from tests.central.fixtures import DAY, HOUR, T0, Fleet


def test_migrations_are_numbered_once_and_idempotent(store: Store) -> None:
    expected = [m.version for m in migrations_for(store.dialect)]
    # 0005: events.ep; 0006: access_log.role; 0007: access_log.entry_id (the audit spool)
    assert expected == [1, 2, 3, 4, 5, 6, 7]
    assert store.applied_versions() == set(expected)
    assert migrate(store) == []
    with open_store(store.url) as second:
        assert migrate(second) == []


def test_no_column_can_hold_personal_data(store: Store) -> None:
    if store.dialect == "sqlite":
        columns = {r["name"] for r in store.fetch("SELECT name FROM pragma_table_info('events')")}
    else:
        columns = {
            r["column_name"]
            for r in store.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'events'"
            )
        }
    assert {"eid", "sub", "ref", "raw", "extra", "received_at", "gateway"} <= columns
    assert not columns & {"name", "doc4", "dob"}


def test_retention_deletes_exactly_the_old_days(store: Store, fleet: Fleet) -> None:
    days = [T0 - 3 * DAY, T0 - 2 * DAY, T0 - DAY + 23 * HOUR, T0, T0 + DAY]
    items = [fleet.scan("dev-a", t, i) for i, t in enumerate(days)]
    gateway = fleet.registry.signers["gw-hn"]
    assert len(ingest_batch(items, gateway, fleet.registry, store, T0).stored) == 5
    result = store.delete_days_before(day_of(T0) - 1)  # keep the day before T0 and later
    assert result == {"days": [day_of(T0) - 3, day_of(T0) - 2], "events": 2}
    left = store.fetch("SELECT t FROM events ORDER BY t")
    assert [r["t"] for r in left] == days[2:]
    if store.dialect == "postgresql":
        partitions = {
            r["relname"]
            for r in store.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'events'::regclass"
            )
        }
        assert partitions == {"events_20210731", "events_20210801", "events_20210802"}
        ids = store.fetch("SELECT COUNT(*) AS n, MIN(t) AS t FROM event_ids")[0]
        assert ids == {"n": 3, "t": days[2]}
    assert store.delete_days_before(day_of(T0) - 1) == {"days": [], "events": 0}
    # a day dropped by retention can be written again (its partition comes back on demand)
    again = ingest_batch([fleet.scan("dev-a", T0 - 3 * DAY, 9)], gateway, fleet.registry, store, T0)
    assert len(again.stored) == 1


def test_partitions_are_created_per_utc_day(store: Store, fleet: Fleet) -> None:
    if store.dialect != "postgresql":
        return  # SQLite keeps one table; covered by the retention test
    gateway = fleet.registry.signers["gw-hn"]
    items = [fleet.scan("dev-a", T0 - 1, 1), fleet.scan("dev-a", T0, 2)]
    ingest_batch(items, gateway, fleet.registry, store, T0)
    with psycopg.connect(store.url) as conn:
        rows = conn.execute("SELECT tableoid::regclass::text, t FROM events ORDER BY t").fetchall()
    assert rows == [("events_20210731", T0 - 1), ("events_20210801", T0)]
    assert T0 % DAY_MS == 0


def test_load_query_uses_the_partial_index_not_a_scan_of_every_scan(store: Store) -> None:
    """Migration 0003: only `load` rows are indexed by (dev, t); the query still finds them."""
    plan_sql = (
        "EXPLAIN QUERY PLAN SELECT dev, MAX(t) FROM events WHERE typ = 'load' GROUP BY dev"
        if store.dialect == "sqlite"
        else "EXPLAIN SELECT dev, MAX(t) FROM events WHERE typ = 'load' GROUP BY dev"
    )
    names = {
        r["name"]
        for r in store.fetch(
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'events'"
            if store.dialect == "postgresql"
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        )
    }
    assert "events_load_dev_t" in names and "events_typ_t" not in names
    if store.dialect == "sqlite":
        plan = " ".join(str(v) for r in store.fetch(plan_sql) for v in r.values())
        assert "events_load_dev_t" in plan
