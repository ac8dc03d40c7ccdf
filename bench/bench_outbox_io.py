"""SD card wear: bytes written per event by the device outbox, from /proc/self/io.

    .venv/bin/python bench/bench_outbox_io.py [--events N]

A fresh process appends N events at one scan a second (a virtual clock: the run takes
seconds, not N seconds), the uplink's work runs between scans as on a unit (pending() every
0.2 s, which group-commits; every published row marked sent; the gateway's ack for what was
published noted; settle when due), and `write_bytes` of /proc/self/io is read before and
after. `write_bytes` counts the page-cache pages the process dirtied (4 KiB each, counted again
after an fsync cleaned them), so it is what reaches the card, give or take the file system's
own journal. The goal: at most 4 KiB per event on average (issue #14).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_BYTES_PER_EVENT = 4096
UPLINK_TICK_S = 0.2  # the uplink pump's wake-up period


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def measure(events: int, directory: Path) -> dict:
    """Run in a fresh process (its own write_bytes). Returns figures as a dict."""
    from nacl.signing import SigningKey

    from device.outbox import Outbox

    now = [0.0]
    box = Outbox(
        directory / "outbox.db",
        "hn01-lane1",
        "HN-01",
        SigningKey.generate(),
        monotonic=lambda: now[0],
    )
    fields = {
        "typ": "scan",
        "clock": "synced",
        "verdict": "pass",
        "reason": "ok",
        "lane": "lane-1",
        "ref": bytes(range(16)),
        "sub": bytes(range(16, 32)),
        "kid": bytes(8),
        "kind": "declaration",
        "tlv": 7,
        "dec_us": 310,
        "ver_us": 140,
    }
    published = 0
    before = _write_bytes()
    for i in range(events):
        box.append({**fields, "t_ms": 1_700_000_000_000 + i * 1000})
        for _ in range(int(1 / UPLINK_TICK_S)):
            now[0] += UPLINK_TICK_S
            rows = box.pending(after_seq=published, limit=64)
            if rows:
                published = rows[-1].seq
                box.mark_sent_through(published)
                box.note_ack(published)  # the gateway's ack comes within the next tick
            box.settle()
    box.close()
    written = _write_bytes() - before
    return {
        "events": events,
        "write_bytes": written,
        "per_event": written / events,
        "syncs": box.syncs,
    }


def measure_in_subprocess(events: int) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # the repo's disk: /tmp may be tmpfs
        out = subprocess.run(
            [sys.executable, __file__, "--events", str(events), "--dir", tmp, "--json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    return json.loads(out)


def run(quick: bool = False) -> list:
    from bench._table import row

    result = measure_in_subprocess(300 if quick else 1000)
    per_event = result["per_event"]
    return [
        row(
            f"outbox bytes written per event ({result['events']} at 1/s, /proc/self/io)",
            f"{per_event / 1024:.2f} KiB ({result['syncs']} fsyncs)",
            "~30 KiB (fsync per append, sent mark, ack)",
            30 * 1024 / per_event if per_event else None,
            "<= 4 KiB",
            per_event <= GOAL_BYTES_PER_EVENT,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.dir is None:
        result = measure_in_subprocess(args.events)
    else:
        result = measure(args.events, args.dir)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['per_event']:.0f} bytes per event over {result['events']} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
