"""Central store HA benchmark (make bench-ha): what durability and failover cost.

    python bench/bench_central_ha.py [--rows 40000]

In one run, on real etcd + Patroni + PostgreSQL processes (tests/central_ha/rig.py):
1. Store ingest rate (PostgresStore.insert_events: binary COPY + idempotent move, 4 threads,
   batches of 1000 decoded rows; no HTTP and no signature checks, which cost the same on every
   layout and would hide the database's share) on: 3 nodes with synchronous replication
   (the production setting), 1 node, and the same 3 nodes asynchronous.
2. Failover: two gateways forward 10,000 events over HTTP; the leader gets kill -9 at a third;
   time from the kill to the first batch accepted on the new leader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from central.store import EventRow  # noqa: E402
from central.store_postgres import PostgresStore  # noqa: E402
from tests.central_ha.rig import HaRig  # noqa: E402

THREADS = 4
BATCH = 1000


def rows(count: int, dev: str) -> list[EventRow]:
    now = int(time.time() * 1000)
    return [
        EventRow(
            eid=os.urandom(16),
            typ="scan",
            dev=dev,
            site="HN-01",
            lane="lane-1",
            seq=i + 1,
            t=now - i,
            received_at=now,
            gateway="gw-hn",
            verdict="pass",
            reason="ok",
            ref=os.urandom(16),
            sub=os.urandom(16),
            kid=os.urandom(8),
            kind="declaration",
            tlv=3,
            clock="synced",
            dec_us=900,
            ver_us=60,
            extra=None,
            raw=os.urandom(230),  # about a signed event's size
        )
        for i in range(count)
    ]


def ingest_rate(rig: HaRig, total: int) -> float:
    assert rig.store is not None
    per_thread = [rows(total // THREADS, f"bench-{t}") for t in range(THREADS)]
    rig.store.insert_events(rows(10, "warm"))  # partition, staging table, connections

    def work(items: list[EventRow], store: PostgresStore) -> None:
        for start in range(0, len(items), BATCH):
            store.insert_events(items[start : start + BATCH])

    threads = [threading.Thread(target=work, args=(p, rig.store)) for p in per_thread]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(p) for p in per_thread) / (time.perf_counter() - started)


def failover(events: int) -> dict:
    rig = HaRig(nodes=3)
    try:
        rig.start()
        rig.start_gateways()
        rig.feed(events)
        rig.wait_confirmed(events // 3, timeout_s=120)
        old, killed_at = rig.kill_leader()
        rig.wait_confirmed(events, timeout_s=240)
        return rig.outcome(rig.failover_s(old, killed_at)).to_json()
    finally:
        rig.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--failover-events", type=int, default=10_000)
    args = parser.parse_args()
    results = []
    for label, nodes, sync in (
        ("3 nodes, synchronous (quorum of one standby)", 3, True),
        ("1 node", 1, False),
        ("3 nodes, asynchronous", 3, False),
    ):
        rig = HaRig(nodes=nodes, synchronous=sync)
        try:
            started = time.monotonic()
            rig.start()
            up_s = time.monotonic() - started
            rate = ingest_rate(rig, args.rows)
        finally:
            rig.close()
        results.append({"layout": label, "rows_per_s": round(rate), "up_s": round(up_s, 1)})
        print(json.dumps(results[-1]), flush=True)
    outcome = failover(args.failover_events)
    print(json.dumps(outcome), flush=True)
    print("\n| layout | store ingest (rows/s) | cluster up (s) |\n|---|---|---|")
    for r in results:
        print(f"| {r['layout']} | {r['rows_per_s']:,} | {r['up_s']} |")
    print(f"| failover, kill -9 → first batch on the new leader | {outcome['failover_s']} s | |")
    return 0 if outcome["missing"] == 0 and outcome["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
