"""Shared helpers for benchmarks: timing, percentiles and the one table format every bench prints.

Each row: figure, chot, reference, ratio, goal, ok (bool or None). `run_all.py` collects rows
from every bench module and writes them into README.md.
"""

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable

Row = dict[str, object]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_each(fn: Callable[[object], object], items: Iterable[object]) -> list[float]:
    """Seconds per call, one sample per item."""
    samples = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        samples.append(time.perf_counter() - start)
    return samples


def rate(samples: list[float]) -> float:
    return len(samples) / sum(samples) if samples else 0.0


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def row(
    figure: str, chot: str, reference: str, ratio: float | None, goal: str, ok: bool | None
) -> Row:
    return {
        "figure": figure,
        "chot": chot,
        "reference": reference,
        "ratio": "" if ratio is None else f"{ratio:.2f}x",
        "goal": goal,
        "ok": ok,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def markdown(rows: list[Row]) -> str:
    lines = [
        "| figure | chot | same-run reference | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r.get("ok")]  # type: ignore[index]
        lines.append(
            f"| {r['figure']} | {r['chot']} | {r['reference']} | {r['ratio']} | {r['goal']} | {met} |"
        )
    return "\n".join(lines)
