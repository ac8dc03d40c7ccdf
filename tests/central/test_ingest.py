"""Ingest through the real FastAPI app (httpx against ASGI) into SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from central import queries
from central.api import create_app
from central.ingest import MAX_EVENTS
from central.store import Store
from protocol import cbor
from tests.central.fixtures import MIN, T0, Fleet, batch, headers, sub

URL = "/api/v1/events"


@pytest.fixture
def client(fleet: Fleet, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(fleet.config(store.url, max_body_bytes=200_000), store)) as c:
        yield c


def post(client: TestClient, gateway: str, events: list, **kw) -> dict:
    response = client.post(URL, content=batch(gateway, events), headers=headers(gateway, **kw))
    assert response.status_code == 200, response.text
    return response.json()


def test_batch_is_stored_once_and_a_retry_is_all_duplicate(
    client: TestClient, fleet: Fleet, store: Store
) -> None:
    events = [fleet.scan("dev-a", T0 + i * MIN, i) for i in range(20)]
    first = post(client, "gw-hn", events)
    assert len(first["stored"]) == 20 and first["duplicate"] == [] and first["rejected"] == []
    again = post(client, "gw-hn", events)
    assert again["stored"] == [] and sorted(again["duplicate"]) == sorted(first["stored"])
    stats = queries.stats(store)
    assert stats["events_central"] == 20 and stats["duplicates"] == 0
    assert stats["by_device"]["dev-a"] == {
        "count": 20,
        "min_seq": 1,
        "max_seq": 20,
        "missing": 0,
        "epochs": {0: {"count": 20, "min_seq": 1, "max_seq": 20, "missing": 0}},
    }


def test_accounting_is_per_outbox_epoch(client: TestClient, fleet: Fleet, store: Store) -> None:
    """Issue #13: a re-imaged unit starts a new outbox epoch at seq 1. Its seqs are not
    duplicates of the old epoch's, and the centre proves each epoch complete (or not)."""
    old, new = 4_503_599_627_370_497, 17
    events = [fleet.sign(fleet.event("dev-a", T0 + i * MIN, seq=i, ep=old)) for i in (1, 2, 3)]
    events += [fleet.sign(fleet.event("dev-a", T0 + i * MIN, seq=i, ep=new)) for i in (1, 2, 4)]
    assert len(post(client, "gw-hn", events)["stored"]) == 6
    stats = queries.stats(store)
    assert stats["duplicates"] == 0
    epochs = stats["by_device"]["dev-a"]["epochs"]
    assert epochs == {
        old: {"count": 3, "min_seq": 1, "max_seq": 3, "missing": 0},
        new: {"count": 3, "min_seq": 1, "max_seq": 4, "missing": 1},  # seq 3 never came
    }
    assert stats["by_device"]["dev-a"]["missing"] == 1
    late = fleet.sign(fleet.event("dev-a", T0 + 3 * MIN, seq=3, ep=new))
    assert len(post(client, "gw-hn", [late])["stored"]) == 1
    assert queries.stats(store)["by_device"]["dev-a"]["missing"] == 0


def test_bad_events_are_rejected_with_reasons_and_good_ones_kept(
    client: TestClient, fleet: Fleet, store: Store
) -> None:
    good = [fleet.scan("dev-a", T0, 1), fleet.scan("dev-b", T0 + MIN, 2)]
    forged_site = fleet.sign(fleet.event("dev-a", T0, site="HCM-01", sub=sub(3)))
    wrong_key = fleet.sign(fleet.event("dev-a", T0, sub=sub(4)), key_of="dev-b")
    scan_by_gateway = fleet.sign(
        fleet.event("gw-hn", T0, typ="scan", verdict="pass", reason="ok", sub=sub(5))
    )
    personal = fleet.sign(fleet.event("gw-hn", T0, typ="manual", extra={"name": "Nguyen Van A"}))
    unknown = fleet.event("dev-a", T0, sub=sub(6))
    unknown_device = fleet.sign(
        type(unknown)(**{**unknown.__dict__, "dev": "dev-zz"}), key_of="dev-a"
    )
    items = [
        good[0],
        b"\xff\x00 not cbor",  # 1
        fleet.scan("dev-x", T0, 7),  # 2 revoked device
        fleet.scan("dev-c", T0, 8),  # 3 another site's device through gw-hn
        forged_site,  # 4
        wrong_key,  # 5
        scan_by_gateway,  # 6
        personal,  # 7
        unknown_device,  # 8
        "a text string",  # 9
        good[1],  # 10
        good[0],  # 11 the same event twice in one batch
    ]
    answer = post(client, "gw-hn", items)
    reasons = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert reasons == {
        1: "bad_cbor",
        2: "device_revoked",
        3: "topic_mismatch",
        4: "topic_mismatch",
        5: "bad_signature",
        6: "bad_event",
        7: "bad_event",
        8: "unknown_device",
        9: "bad_event",
    }
    by_index = {r["index"]: r for r in answer["rejected"]}
    assert by_index[5]["eid"] is not None and by_index[1]["eid"] is None
    assert all(r["detail"] for r in answer["rejected"])
    assert len(answer["stored"]) == 2 and len(answer["duplicate"]) == 1
    assert queries.stats(store)["events_central"] == 2
    # no personal data reached the store, not even in the audit copy
    rows = store.fetch("SELECT raw, extra FROM events")
    assert all(b"Nguyen" not in r["raw"] for r in rows)


def test_gateway_events_keep_extra(client: TestClient, fleet: Fleet, store: Store) -> None:
    manual = fleet.sign(
        fleet.event(
            "gw-hn",
            T0,
            typ="manual",
            verdict="pass",
            reason="ok",
            sub=sub(9),
            extra={"category": "paper", "operator": "op-1"},
        )
    )
    load = fleet.sign(fleet.event("gw-hn", T0 + MIN, extra={"lanes": {"lane-1": 12}}))
    assert len(post(client, "gw-hn", [manual, load])["stored"]) == 2
    assert queries.load(store)[0]["extra"] == {"lanes": {"lane-1": 12}}
    row = store.fetch("SELECT typ, extra, raw FROM events WHERE typ = 'manual'")[0]
    assert '"category": "paper"' in row["extra"] and row["raw"] == manual


@pytest.mark.parametrize(
    ("gateway", "token", "header_gateway"),
    [
        ("gw-hn", "wrong-token", "gw-hn"),
        ("gw-hn", "hcm-secret-token", "gw-hn"),
        ("gw-hn", "hn-secret-token", "dev-a"),
        ("gw-hn", None, "gw-hn"),
    ],
)
def test_bad_token_is_refused(
    client: TestClient,
    fleet: Fleet,
    store: Store,
    gateway: str,
    token: str | None,
    header_gateway: str,
) -> None:
    hdrs = headers(header_gateway, token or "x")
    if token is None:
        del hdrs["Authorization"]
    response = client.post(URL, content=batch(gateway, [fleet.scan("dev-a", T0, 1)]), headers=hdrs)
    assert response.status_code == 401
    assert queries.stats(store)["events_central"] == 0


def test_revoking_a_gateway_in_the_registry_file_takes_effect(
    client: TestClient, fleet: Fleet
) -> None:
    assert len(post(client, "gw-hn", [fleet.scan("dev-a", T0, 1)])["stored"]) == 1
    fleet.registry.revoke("gw-hn")
    fleet.registry.save(fleet.registry_path)
    response = client.post(URL, content=batch("gw-hn", []), headers=headers("gw-hn"))
    assert response.status_code == 401


def test_malformed_bodies(client: TestClient, fleet: Fleet, store: Store) -> None:
    hdrs = headers("gw-hn")
    bad_cbor = client.post(URL, content=b"\xa1\x61", headers=hdrs)
    assert bad_cbor.status_code == 400 and bad_cbor.json()["reason"] == "bad_cbor"
    not_a_batch = client.post(URL, content=cbor.dumps([1, 2]), headers=hdrs)
    assert not_a_batch.status_code == 400 and not_a_batch.json()["reason"] == "bad_event"
    other = client.post(URL, content=batch("gw-hcm", [fleet.scan("dev-a", T0, 1)]), headers=hdrs)
    assert other.status_code == 400 and other.json()["reason"] == "topic_mismatch"
    too_many = client.post(URL, content=batch("gw-hn", [b""] * (MAX_EVENTS + 1)), headers=hdrs)
    assert too_many.status_code == 413 and too_many.json()["reason"] == "too_large"
    too_big = client.post(URL, content=batch("gw-hn", [b"x" * 250_000]), headers=hdrs)
    assert too_big.status_code == 413
    assert queries.stats(store)["events_central"] == 0
