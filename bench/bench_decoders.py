"""Decoder benchmark: decode rate and time per frame, for choosing ``DEFAULT_DECODER``.

    python bench/bench_decoders.py [--frames 80] [--empty 40] [--seed 2021]

Frame sets are rendered by device.synthetic from the shared test pass (seeded, so reruns give
the same frames); the decoders are the real device.decode backends. "Empty" sets have no code
at all: most camera frames at a checkpoint are empty, so their cost is the idle CPU load and
any hit there is a false positive. Prints a markdown table; ``run()`` returns the rows.
No real photographs are used: none are available offline (see device/DECODERS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing chot
    sys.path.insert(0, str(ROOT))

from bench._table import machine, percentile  # noqa: E402
from bench._table import row as table_row  # noqa: E402
from device import synthetic  # noqa: E402
from device.decode import DECODERS, make_decoder  # noqa: E402
from harness.vectors import vector_path  # noqa: E402

VECTOR = vector_path("chot-pass-v1.json")
SIZES = ((640, 480), (1280, 720))


def frame_sets(frames: int, empty: int, seed: int, text: str) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    sets: dict[str, list[np.ndarray]] = {}
    for w, h in SIZES:
        for difficulty in ("easy", "normal", "hard"):
            sets[f"{difficulty} {w}x{h}"] = [
                synthetic.render_frame(text, size=(w, h), rng=rng, difficulty=difficulty)
                for _ in range(frames)
            ]
        sets[f"empty {w}x{h}"] = [
            synthetic.render_frame(None, size=(w, h), rng=rng, difficulty="normal")
            for _ in range(empty)
        ]
    return sets


def run(quick: bool = False, frames: int = 80, empty: int = 40, seed: int = 2021) -> list[dict]:
    """One row per decoder x frame set: decoded %, wrong texts, ms/frame p50 and p99.
    ``quick`` renders a quarter of the frames (rates then move by a few points)."""
    if quick:
        frames, empty = max(1, frames // 4), max(1, empty // 4)
    text = json.loads(VECTOR.read_text())["qr_text"]
    sets = frame_sets(frames, empty, seed, text)
    rows = []
    for name in DECODERS:
        decoder = make_decoder(name)
        decoder.decode(next(iter(sets.values()))[0])  # warm-up (lazy init, caches)
        for set_name, images in sets.items():
            times, found, wrong = [], 0, 0
            for image in images:
                t = time.perf_counter()
                texts = decoder.decode(image)
                times.append((time.perf_counter() - t) * 1000)
                found += bool(texts)
                wrong += sum(t != text for t in texts)  # counted, never printed (privacy)
            rows.append(
                {
                    "decoder": name,
                    "frames": set_name,
                    "n": len(images),
                    "decoded_pct": 100 * found / len(images),
                    "wrong": wrong,
                    "p50_ms": percentile(times, 50),
                    "p99_ms": percentile(times, 99),
                }
            )
    return rows


def module_sweep(frames: int = 40, seed: int = 2021) -> list[dict]:
    """Decode rate against camera pixels per QR module, "normal" conditions at 640x480:
    how large the pass must appear in the lores frame (sets the mount distance)."""
    text = json.loads(VECTOR.read_text())["qr_text"]
    modules = synthetic.qr_modules(text).shape[0]  # with quiet zone
    decoders = [make_decoder(name) for name in DECODERS]
    rows = []
    for ppm in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0):
        frac = ppm * modules / 480
        rng = np.random.default_rng(seed)
        images = [synthetic.render_frame(text, rng=rng, qr_frac=frac) for _ in range(frames)]
        row: dict = {"px_per_module": ppm, "qr_px": round(frac * 480), "n": frames}
        for d in decoders:
            row[f"{d.name}_pct"] = 100 * sum(d.decode(i) == [text] for i in images) / frames
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """The figures behind ``DEFAULT_DECODER`` in bench/_table's shared row format (for
    run_all.py): zxing on "normal" 640x480 frames, against ZBar on the same frames."""
    pick = {(r["decoder"], r["frames"]): r for r in rows}
    out = []
    for frames in ("normal 640x480", "empty 640x480"):
        zx, zb = pick[("zxing", frames)], pick[("zbar", frames)]
        out.append(
            table_row(
                f"QR decode, {frames}, ms/frame p50 (decoded %)",
                f"zxing {zx['p50_ms']:.2f} ms ({zx['decoded_pct']:.0f} %)",
                f"zbar {zb['p50_ms']:.2f} ms ({zb['decoded_pct']:.0f} %)",
                zb["p50_ms"] / zx["p50_ms"],
                "default decoder faster, decodes as many",
                zx["p50_ms"] < zb["p50_ms"] and zx["decoded_pct"] >= zb["decoded_pct"],
            )
        )
    return out


def markdown(rows: list[dict]) -> str:
    out = [
        "| decoder | frame set | frames | decoded % | wrong | ms p50 | ms p99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['decoder']} | {r['frames']} | {r['n']} | {r['decoded_pct']:.0f} | "
            f"{r['wrong']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=80, help="frames per set with a code")
    parser.add_argument("--empty", type=int, default=40, help="frames per empty set")
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(frames=args.frames, empty=args.empty, seed=args.seed)
    print(f"{machine()}; seed {args.seed}\n")
    print(markdown(rows))
    sweep = module_sweep(seed=args.seed)
    names = [k for k in sweep[0] if k.endswith("_pct")]
    heads = " | ".join(n.removesuffix("_pct") + " %" for n in names)
    print(f"\n| px per module | QR side px (640x480) | frames | {heads} |")
    print("|---:|---:|---:|" + "---:|" * len(names))
    for r in sweep:
        cells = " | ".join(f"{r[k]:.0f}" for k in names)
        print(f"| {r['px_per_module']} | {r['qr_px']} | {r['n']} | {cells} |")
    print(f"\n({time.perf_counter() - started:.0f} s including rendering)")


if __name__ == "__main__":
    main()
