"""Run every benchmark, print one table, and (with --write-readme) put it into README.md.

    .venv/bin/python bench/run_all.py [--quick] [--write-readme] [--only NAME ...]

Each bench module exposes `run(quick: bool) -> list[row]` (or detailed rows plus `summary()`); a module that fails still leaves a row
saying so, so a broken benchmark is visible rather than silently missing.
"""

import argparse
import datetime
import importlib
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._table import machine, markdown, row  # noqa: E402

MODULES = (
    "bench_protocol",
    "bench_dcc",
    "bench_decoders",
    "bench_device",
    "bench_outbox_io",
    "bench_gateway",
    "bench_central",
    "bench_provisioning",
    "bench_e2e",
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (minutes, not tens)")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    rows = []
    for name in MODULES:
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        print(f"# {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            result = module.run(quick=args.quick)
            # a module whose run() returns detailed rows offers summary() in the table format
            rows += module.summary(result) if hasattr(module, "summary") else result
        except Exception as exc:
            traceback.print_exc()
            rows.append(row(f"{name} failed", type(exc).__name__, str(exc)[:80], None, "", False))
        print(f"# {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    table = markdown(rows)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    mode = "quick" if args.quick else "full"
    text = f"Measured {stamp} ({mode} run) on: {machine()}.\n\n{table}"
    print(text)
    if args.write_readme:
        readme = ROOT / "README.md"
        content = readme.read_text()
        content = re.sub(
            r"<!-- bench:start -->.*<!-- bench:end -->",
            lambda _m: f"<!-- bench:start -->\n{text}\n<!-- bench:end -->",
            content,
            flags=re.S,
        )
        readme.write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
