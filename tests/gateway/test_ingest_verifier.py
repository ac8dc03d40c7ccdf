"""The verifier process: batches are pipelined through it in order, and when it dies the
gateway verifies in its own process and starts a new one; no event is accepted unchecked."""

import os
import signal

from gateway.ingest import Inbound, Ingest, RegistrySource
from gateway.store import Store
from tests.support.gateway_core import SITE, Site, make_event, wait_for


def inbound(dev: str, payload: bytes, mid: int) -> Inbound:
    return Inbound("event", dev, payload, mid, 1, 0)


def verifier_pids(ingest: Ingest) -> list[int]:
    return ingest.verifier.worker_pids() if ingest.verifier else []


def test_pipelined_batches_survive_a_killed_verifier_process(tmp_path):
    site = Site(tmp_path / "site", devices=2)
    store = Store(tmp_path / "gateway.db")
    ingest = Ingest(
        store, SITE, RegistrySource(site.dir / "registry.json", SITE), batch_max=50, batch_ms=5
    )
    ingest.start()
    try:
        mid = 0
        for seq in range(1, 201):  # many small batches: several are in the verifier at once
            mid += 1
            ingest.queue.put(inbound("d01", make_event(site.keys["d01"], "d01", seq)[0], mid))
        assert wait_for(lambda: store.event_count() == 200, 30)
        assert wait_for(lambda: verifier_pids(ingest), 10)
        killed = verifier_pids(ingest)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        forged = make_event(site.keys["d01"], "d02", 1)[0]  # d02's name, d01's key
        for seq in range(1, 101):
            mid += 1
            ingest.queue.put(inbound("d02", make_event(site.keys["d02"], "d02", seq + 1)[0], mid))
        ingest.queue.put(inbound("d02", forged, mid + 1))
        assert wait_for(lambda: store.event_count() == 300, 30)
        assert wait_for(lambda: store.reject_counts() == {"bad_signature": 1}, 10)
        # a new verifier process is up
        assert wait_for(
            lambda: verifier_pids(ingest) and not set(verifier_pids(ingest)) & set(killed), 10
        )
        assert ingest.totals["stored"] == 300
    finally:
        ingest.stop()
