"""A scanner unit whose wall clock is controlled by a test, run in its own process:

    python -m harness.e2e.clock_unit --config device.toml --clock-file clock.json

The unit's wall-clock offset and kernel sync state come from a small JSON file, so a test can
jump the clock of a running unit (the app's own injection point:
`DeviceApp(clock=ClockSource(...))`).
"""

import argparse
import contextlib
import json
import logging
import threading
import time
from pathlib import Path


def run_device_with_clock(config: Path, clock_file: Path) -> None:
    """A scanner unit whose wall-clock offset and kernel sync state follow `clock_file`
    (JSON {"offset_s": float, "state": "synced"|"bounded"|"unknown"}), re-read every 0.2 s."""
    from device.app import DeviceApp
    from device.clock_source import ClockSource
    from device.config import load_config
    from protocol.clock import ClockState

    setting = {"offset_s": 0.0, "state": "synced"}

    def poll() -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                setting.update(json.loads(clock_file.read_text()))
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    clock = ClockSource(
        probe=lambda: ClockState(setting["state"]),
        wall=lambda: time.time() + float(setting["offset_s"]),
        probe_interval_s=0.2,
    )
    DeviceApp(load_config(config), clock=clock).run()


def set_clock(clock_file: Path, *, offset_s: float = 0.0, state: str = "synced") -> None:
    """Set the unit's clock (atomically: the unit never reads half a file)."""
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"offset_s": offset_s, "state": state}))
    tmp.replace(clock_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.e2e.clock_unit")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--clock-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_device_with_clock(args.config, args.clock_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
