"""Central store benchmark: HTTP ingest into PostgreSQL, and tracing query latency.

    python bench/bench_central.py [--quick]

1. Ingest: signed events (real Ed25519 keys) posted in batches of 1000 by 4 client threads to
   a real `uvicorn` server (2 worker processes) running central.api against a fresh
   PostgreSQL database; every event is verified, deduplicated and stored. Same-run references:
   a bare COPY of the same rows into an unindexed table (no HTTP, no verification), and bare
   PyNaCl verification of the same signatures on every core (no parsing, HTTP or database):
   the ceiling for any ingest that verifies each event.
2. Tracing: `visits` and `contacts` (±30 min) latency at 10 M stored events (quick: 1 M),
   generated in the database with generate_series; reference: the same visits query with
   index scans disabled (what the (sub, t) index buys).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing chot
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from nacl.signing import SigningKey, VerifyKey  # noqa: E402

from bench._table import machine, markdown  # noqa: E402
from bench._table import row as table_row  # noqa: E402
from central import queries  # noqa: E402
from central.backends import open_store  # noqa: E402
from central.ingest import to_row  # noqa: E402
from central.migrate import migrate  # noqa: E402
from central.store import COLUMNS, DAY_MS, day_of  # noqa: E402
from protocol import cbor, cose  # noqa: E402
from protocol.events import Event, new_event_id, open_event, sign_event  # noqa: E402
from protocol.registry import Registry, Signer  # noqa: E402

ADMIN_URL = os.environ.get("CHOT_BENCH_PG", "postgresql://chot_test@127.0.0.1:5432/postgres")
T0 = 1_627_776_000_000  # 2021-08-01T00:00Z
BATCH = 1000
CLIENTS = 4
WORKERS = 2
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database() -> str:
    name = f"chot_bench_{random.randrange(16**8):08x}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop(url: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _fleet(directory: Path, devices: int = 20) -> tuple[Registry, dict[str, SigningKey]]:
    registry, keys = Registry(), {}
    for i in range(devices):
        keys[f"dev-{i}"] = SigningKey.generate()
        registry.add(Signer(f"dev-{i}", "HN-01", "device", bytes(keys[f"dev-{i}"].verify_key)))
    keys["gw-1"] = SigningKey.generate()
    registry.add(Signer("gw-1", "HN-01", "gateway", bytes(keys["gw-1"].verify_key)))
    registry.set_token("gw-1", TOKEN)
    registry.save(directory / "registry.json")
    return registry, keys


def _events(keys: dict[str, SigningKey], n: int) -> list[bytes]:
    devices = [k for k in keys if k.startswith("dev-")]
    seqs = dict.fromkeys(devices, 0)
    out = []
    for i in range(n):
        dev = devices[i % len(devices)]
        seqs[dev] += 1
        event = Event(
            eid=new_event_id(),
            typ="scan",
            dev=dev,
            site="HN-01",
            seq=seqs[dev],
            t_ms=T0 + i * 50,
            clock="synced",
            verdict="pass",
            reason="ok",
            lane="lane-1",
            ref=os.urandom(16),
            sub=os.urandom(16),
            kid=b"k" * 8,
            kind="declaration",
            tlv=3,
            dec_us=400,
            ver_us=70,
        )
        out.append(sign_event(event, keys[dev]))
    return out


def _serve(directory: Path, store_url: str, port: int) -> subprocess.Popen:
    config = directory / "central.toml"
    config.write_text(f'store = "{store_url}"\nregistry = "registry.json"\n')
    env = {**os.environ, "CHOT_CENTRAL_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "central.api:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=directory,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("central server did not start")


def bench_ingest(n: int) -> dict:
    url = _database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            registry, keys = _fleet(directory)
            events = _events(keys, n)
            with open_store(url) as store:
                migrate(store)
                store.insert_events([])  # nothing: the server creates partitions itself
            bodies = [
                cbor.dumps({"gateway": "gw-1", "events": events[i : i + BATCH]})
                for i in range(0, n, BATCH)
            ]
            port = free_port()
            server = _serve(directory, url, port)
            try:
                stored = _post_all(f"http://127.0.0.1:{port}", bodies)
            finally:
                server.terminate()
                server.wait(10)
            copy_rate = _bare_copy(url, registry, events)
            verify_rate = _bare_verify(registry, events)
    finally:
        _drop(url)
    return {
        "n": n,
        "stored": stored[0],
        "http_rate": n / stored[1],
        "copy_rate": copy_rate,
        "verify_rate": verify_rate,
    }


def _verify_chunk(work: list[tuple[bytes, bytes, bytes]]) -> int:
    keys = {public_key: VerifyKey(public_key) for public_key, _, _ in work}  # built once each
    for public_key, message, signature in work:
        keys[public_key].verify(message, signature)
    return len(work)


def _bare_verify(registry: Registry, events: list[bytes]) -> float:
    """The other limit: bare PyNaCl verify of the same signatures, one process per core
    (no parsing, no HTTP, no database). Ingest cannot beat it: every event is verified."""
    work = []
    for raw in events:
        msg = cose.parse_sign1(raw)
        dev = cbor.loads_strict(msg.payload)["dev"]
        work.append((registry.signers[dev].public_key, msg.to_be_signed(), msg.signature))
    cores = os.cpu_count() or 1
    chunks = [work[i::cores] for i in range(cores)]
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_verify_chunk, [c[:10] for c in chunks])  # warm: imports, page cache
        start = time.perf_counter()
        verified = sum(pool.map(_verify_chunk, chunks))
        return verified / (time.perf_counter() - start)


def _post_all(base: str, bodies: list[bytes]) -> tuple[int, float]:
    queue = list(range(len(bodies)))
    lock = threading.Lock()
    stored = [0]
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "X-Chot-Gateway": "gw-1",
        "Content-Type": "application/cbor",
    }

    def client() -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop()
                answer = http.post("/api/v1/events", content=bodies[index], headers=headers)
                answer.raise_for_status()
                with lock:
                    stored[0] += len(answer.json()["stored"])

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stored[0], time.perf_counter() - start


def _bare_copy(url: str, registry: Registry, events: list[bytes]) -> float:
    """The same rows (already decoded) COPYed into a plain table: the database's own speed."""
    rows = [to_row(open_event(e, registry.key_for).event, e, "gw-1", T0).values() for e in events]
    with psycopg.connect(url) as conn:
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS copy_ref (LIKE events)")
        conn.execute("ALTER TABLE copy_ref SET LOGGED")
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY copy_ref ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for values in rows:
                copy.write_row(values)
        conn.commit()
        return len(rows) / (time.perf_counter() - start)


def bench_tracing(n: int, probes: int = 30) -> dict:
    """n events over 30 days, 200 sites, n/5 subjects (5 visits each on average)."""
    url = _database()
    try:
        with open_store(url) as store:
            migrate(store)
            days = 30
            span = days * DAY_MS
            store._ensure_partitions({day_of(T0 + d * DAY_MS) for d in range(days)})
            subjects = max(1, n // 5)
            start = time.perf_counter()
            with psycopg.connect(url) as conn:
                for lo in range(0, n, 1_000_000):
                    hi = min(n, lo + 1_000_000)
                    conn.execute(
                        "INSERT INTO events (eid, typ, dev, site, lane, seq, t, received_at, "
                        "gateway, verdict, reason, ref, sub, kid, kind, tlv, clock, raw) "
                        "SELECT decode(md5('e' || g), 'hex'), 'scan', 'dev-' || mod(g, 1000), "
                        "'site-' || mod(g, 200), 'lane-1', g / 1000 + 1, "
                        "%(t0)s + (g::bigint * %(span)s / %(n)s), %(t0)s, 'gw-' || mod(g, 200), "
                        "'pass', 'ok', decode(md5('r' || g), 'hex'), "
                        "decode(md5('s' || mod(g::bigint * 7919, %(subjects)s)), 'hex'), "
                        "'\\x0011223344556677'::bytea, 'declaration', 3, 'synced', "
                        "'\\x00'::bytea FROM generate_series(%(lo)s, %(hi)s - 1) g",
                        {"t0": T0, "span": span, "n": n, "subjects": subjects, "lo": lo, "hi": hi},
                    )
                    conn.commit()
                conn.execute("ANALYZE events")
                conn.commit()
            load_s = time.perf_counter() - start
            rng = random.Random(7)
            subs = [_md5_sub(rng.randrange(subjects)) for _ in range(probes)]
            visits_ms, contacts_ms, rows = [], [], 0
            for sub in subs:
                t = time.perf_counter()
                rows += len(queries.visits(store, sub, T0, T0 + span, operator="bench"))
                visits_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                queries.contacts(store, sub, 30, T0, T0 + span, operator="bench")
                contacts_ms.append((time.perf_counter() - t) * 1000)
            seq_ms = _seqscan_visits(url, subs[:3], T0, T0 + span)
    finally:
        _drop(url)
    return {
        "n": n,
        "load_s": load_s,
        "visits_ms": statistics.median(visits_ms),
        "visits_p99": max(visits_ms),
        "contacts_ms": statistics.median(contacts_ms),
        "contacts_p99": max(contacts_ms),
        "seq_ms": seq_ms,
        "visits_rows": rows / probes,
    }


def _md5_sub(k: int) -> bytes:
    import hashlib

    return hashlib.md5(f"s{k}".encode(), usedforsecurity=False).digest()


def _seqscan_visits(url: str, subs: list[bytes], t_from: int, t_to: int) -> float:
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_bitmapscan = off")
        times = []
        for sub in subs:
            t = time.perf_counter()
            conn.execute(
                "SELECT t, site FROM events WHERE sub = %s AND t >= %s AND t < %s",
                (sub, t_from, t_to),
            ).fetchall()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(quick: bool = False) -> list[dict]:
    ingest = bench_ingest(20_000 if quick else 100_000)
    tracing = bench_tracing(1_000_000 if quick else 10_000_000)
    ratio = ingest["http_rate"] / ingest["copy_rate"]
    size = f"{tracing['n'] / 1e6:g} M events" + (" (quick mode; full run: 10 M)" if quick else "")
    return [
        table_row(
            f"central ingest: HTTP batches of {BATCH} -> PostgreSQL, Ed25519-verified, "
            f"{ingest['n']:,} events, {WORKERS} uvicorn workers (events/s)",
            f"{ingest['http_rate']:,.0f}/s ({ingest['stored']:,} stored)",
            f"bare COPY of the same rows: {ingest['copy_rate']:,.0f}/s; bare Ed25519 verify "
            f"of the same events on {os.cpu_count()} cores: {ingest['verify_rate']:,.0f}/s "
            f"(ingest = {ingest['http_rate'] / ingest['verify_rate']:.2f}x of it)",
            ratio,
            ">= 0.5x COPY and >= 20,000/s",
            ratio >= 0.5 and ingest["http_rate"] >= 20_000,
        ),
        table_row(
            f"tracing `visits` (one subject, 30 days) at {size}, median / max ms",
            f"{tracing['visits_ms']:.1f} / {tracing['visits_p99']:.1f} ms "
            f"({tracing['visits_rows']:.1f} rows)",
            f"same query, index scans off: {tracing['seq_ms']:.0f} ms",
            tracing["visits_ms"] / tracing["seq_ms"],
            "< 100 ms",
            tracing["visits_ms"] < 100,
        ),
        table_row(
            f"tracing `contacts` (±30 min, same site) at {size}, median / max ms",
            f"{tracing['contacts_ms']:.1f} / {tracing['contacts_p99']:.1f} ms",
            f"generating {tracing['n']:,} rows + indexes: {tracing['load_s']:.0f} s",
            None,
            "< 500 ms",
            tracing["contacts_ms"] < 500,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k ingest, 1 M tracing rows")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print(f"Machine: {machine()}\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
