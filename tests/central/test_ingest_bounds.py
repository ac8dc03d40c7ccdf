"""One event can never stop forwarding to the centre (issue #13, item 2): values the gateway
accepted but a store cannot hold, or a row the database itself refuses, are rejected one by
one with a reason; the rest of the batch is stored and the answer is still 200. Real FastAPI
app, real SQLite and real PostgreSQL."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from central import queries
from central.api import create_app
from central.ingest import insert_isolating, is_row_refusal, to_row
from central.store import Store, StoreUnavailable
from central.store_postgres import PostgresStore
from protocol.events import open_event
from tests.central.fixtures import MIN, T0, Fleet, batch, headers, sub

URL = "/api/v1/events"
YEAR_10000_MS = 253_402_300_800_000


@pytest.fixture
def client(fleet: Fleet, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(fleet.config(store.url), store)) as c:
        yield c


def post(client: TestClient, events: list[bytes]) -> dict:
    response = client.post(URL, content=batch("gw-hn", events), headers=headers("gw-hn"))
    assert response.status_code == 200, response.text
    return response.json()


def hostile(fleet: Fleet, n: int, t_ms: int = T0, **fields) -> bytes:
    """Correctly signed by dev-a's key, as a stolen unit would sign it."""
    return fleet.sign(fleet.event("dev-a", t_ms, sub=sub(n), **fields))


def test_values_no_store_can_hold_are_rejected_per_event(
    client: TestClient, fleet: Fleet, store: Store
) -> None:
    poisons = {
        "tlv 2^63": hostile(fleet, 100, tlv=2**63),
        "seq 2^63": hostile(fleet, 101, seq=2**63),
        "t_ms past 9999": hostile(fleet, 102, t_ms=YEAR_10000_MS),
        "t_ms 2^63": hostile(fleet, 103, t_ms=2**63),
        "dec_us past int4": hostile(fleet, 104, dec_us=2**31),
        "NUL in lane": hostile(fleet, 105, lane="lane\x00"),
        "NaN in extra": fleet.sign(
            fleet.event("gw-hn", T0, typ="manual", extra={"ratio": float("nan")})
        ),
    }
    good = [fleet.scan("dev-a", T0 + i * MIN, i) for i in range(5)]
    items = [good[0], *poisons.values(), *good[1:]]
    answer = post(client, items)
    assert len(answer["stored"]) == 5 and answer["duplicate"] == []
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert sorted(rejected) == list(range(1, 1 + len(poisons)))
    for index, name in enumerate(poisons, start=1):
        assert rejected[index]["reason"] == "out_of_range", name
        assert rejected[index]["eid"] is not None, name
    assert queries.stats(store)["events_central"] == 5


def _refuse_lane_in_the_database(store: Store, lane: str) -> None:
    """A real database refusal the contract does not know about (a constraint added by a
    DBA, a type the schema narrowed later): the store must still isolate it."""
    if store.dialect == "sqlite":
        store.execute(
            "CREATE TRIGGER refuse_lane BEFORE INSERT ON events "
            f"WHEN NEW.lane = '{lane}' BEGIN SELECT RAISE(ABORT, 'lane refused'); END"
        )
    else:
        store.execute(
            f"ALTER TABLE events ADD CONSTRAINT refuse_lane CHECK (lane IS DISTINCT FROM '{lane}')"
        )


def test_a_row_the_database_refuses_is_rejected_alone(
    client: TestClient, fleet: Fleet, store: Store
) -> None:
    _refuse_lane_in_the_database(store, "refused-lane")
    good = [fleet.scan("dev-a", T0 + i * MIN, i) for i in range(9)]
    poison = [hostile(fleet, 50 + i, lane="refused-lane") for i in range(2)]
    items = [*good[:3], poison[0], *good[3:7], poison[1], *good[7:]]
    answer = post(client, items)
    assert len(answer["stored"]) == 9
    reasons = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert reasons == {3: "store_refused", 8: "store_refused"}
    assert all(r["eid"] and r["detail"] for r in answer["rejected"])
    assert queries.stats(store)["events_central"] == 9
    # the gateway retries its batch after a lost reply: the good ones are duplicates now
    again = post(client, items)
    assert sorted(again["duplicate"]) == sorted(answer["stored"]) and again["stored"] == []
    assert {r["index"] for r in again["rejected"]} == {3, 8}


def test_an_unreachable_database_is_not_a_rejection(fleet: Fleet) -> None:
    """An outage must never turn into store_refused (the gateway would never resend those
    events): it propagates, so the batch is answered with an error and sent again."""
    raw = fleet.scan("dev-a", T0, 1)
    event = open_event(raw, fleet.registry.signer_keys()).event
    row = to_row(event, raw, "gw-hn", T0)
    closed = PostgresStore("postgresql://chot_test@127.0.0.1:1/nowhere", failover_wait_s=0.1)
    try:
        with pytest.raises(Exception) as err:
            insert_isolating(closed, [row])
        assert isinstance(err.value, StoreUnavailable) and not is_row_refusal(err.value)
    finally:
        closed.close()
