"""Idempotent ingest under concurrent, retried batches through a real uvicorn server."""

import random
import threading

import httpx

from central import queries
from central.api import create_app
from central.store import Store
from tests.central.fixtures import MIN, T0, Fleet, batch, headers
from tests.central.server import serve

THREADS = 4
BATCHES = 3
PER_BATCH = 150


def test_concurrent_retried_batches_store_every_event_exactly_once(
    fleet: Fleet, store: Store
) -> None:
    # Batches span two UTC days, so PostgreSQL creates partitions while threads race.
    bodies = [
        batch(
            "gw-hn",
            [
                fleet.scan(
                    random.choice(["dev-a", "dev-b"]), T0 - 90 * MIN + (b * PER_BATCH + i) * 1000, i
                )
                for i in range(PER_BATCH)
            ],
        )
        for b in range(BATCHES)
    ]
    answers: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def gateway(base: str, seed: int) -> None:
        order = list(range(BATCHES)) * 2  # every batch twice: a retry after a lost answer
        random.Random(seed).shuffle(order)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                for index in order:
                    response = client.post(
                        "/api/v1/events", content=bodies[index], headers=headers("gw-hn")
                    )
                    response.raise_for_status()
                    with lock:
                        answers.append(response.json())
        except BaseException as exc:
            errors.append(exc)

    with serve(create_app(fleet.config(store.url), store)) as base:
        threads = [threading.Thread(target=gateway, args=(base, s)) for s in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert errors == []
    assert len(answers) == THREADS * BATCHES * 2
    stored = [eid for answer in answers for eid in answer["stored"]]
    assert len(stored) == len(set(stored)) == BATCHES * PER_BATCH  # each eid stored exactly once
    for answer in answers:
        assert answer["rejected"] == []
        assert len(answer["stored"]) + len(answer["duplicate"]) == PER_BATCH
    stats = queries.stats(store)
    assert stats["events_central"] == BATCHES * PER_BATCH and stats["duplicates"] == 0
