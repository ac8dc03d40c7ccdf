"""Output backends for LEDs and buzzer, chosen by name or by ``CHOT_GPIO_BACKEND``."""

from __future__ import annotations

import os

from device.gpio.base import BUZZER, DEFAULT_PINS, LEDS, OutputBackend
from device.gpio.simulated import SimulatedBackend

__all__ = ["BUZZER", "DEFAULT_PINS", "LEDS", "OutputBackend", "SimulatedBackend", "make_backend"]

BACKENDS = ("simulated", "rpigpio")


def make_backend(name: str | None = None, pins: dict[str, int] | None = None) -> OutputBackend:
    """Build and set up a backend. ``CHOT_GPIO_BACKEND`` wins over ``name`` so a unit can be
    run on a desk (``simulated``) without editing its config; the default is ``simulated``."""
    chosen = os.environ.get("CHOT_GPIO_BACKEND") or name or "simulated"
    pins = dict(pins or DEFAULT_PINS)
    backend: OutputBackend
    if chosen == "simulated":
        backend = SimulatedBackend()
    elif chosen == "rpigpio":
        from device.gpio.rpigpio import RPiGPIOBackend

        backend = RPiGPIOBackend()
    else:
        raise ValueError(f"unknown GPIO backend {chosen!r}; expected one of {', '.join(BACKENDS)}")
    backend.setup(pins)
    return backend
