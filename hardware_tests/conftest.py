"""Hardware tests run only on a Raspberry Pi, and only when asked with CHOT_HARDWARE=1.

They need a camera, LEDs and a buzzer wired as device.gpio.DEFAULT_PINS (or CHOT_PINS as
JSON, e.g. '{"green": 5, "red": 6, "amber": 13, "buzzer": 12}'), and a person watching.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODEL = Path("/proc/device-tree/model")


def _skip_reason() -> str | None:
    try:
        model = MODEL.read_bytes().decode(errors="replace").rstrip("\x00")
    except OSError:
        model = ""
    if "Raspberry Pi" not in model:
        return f"needs a Raspberry Pi ({MODEL} says {model or 'nothing'!r})"
    if os.environ.get("CHOT_HARDWARE") != "1":
        return f"on {model}, but CHOT_HARDWARE=1 is not set (these tests drive real outputs)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))
