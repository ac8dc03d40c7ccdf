"""The one module that imports ``RPi.GPIO``.

Works unchanged with ``rpi-lgpio`` on a Raspberry Pi 5 (it provides the same ``RPi.GPIO``
API on top of lgpio). The buzzer is a passive piezo driven by software PWM at 50 % duty;
an active buzzer would also sound on a plain high level, but then it has only one pitch.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from device.gpio.base import DEFAULT_PINS


class RPiGPIOBackend:
    """BCM numbering, outputs start low, PWM objects made once per pin (RPi.GPIO refuses a
    second one on the same channel), ``cleanup`` of our own pins only on close."""

    def __init__(self, pins: dict[str, int] | None = None) -> None:
        _writable_lgpio_dir()
        try:
            import RPi.GPIO as GPIO
        except ImportError as exc:
            raise RuntimeError(
                "RPi.GPIO is not available: install python3-rpi.gpio (Pi 1-4) or "
                "python3-rpi-lgpio (Pi 5), or use CHOT_GPIO_BACKEND=simulated"
            ) from exc
        except Exception as exc:  # rpi-lgpio opens the chip on import: lgpio.error, OSError
            raise RuntimeError(
                f"RPi.GPIO could not open the GPIO chip ({type(exc).__name__}: {exc}); "
                f"check the gpio group and that LG_WD ({os.environ.get('LG_WD')}) is writable"
            ) from exc
        self._gpio: Any = GPIO
        self._pins: dict[str, int] = {}
        self._pwm: dict[str, Any] = {}
        self._sounding: dict[str, float | None] = {}
        if pins is not None:
            self.setup(pins)

    def setup(self, pins: dict[str, int] | None = None) -> None:
        gpio = self._gpio
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)
        self._pins = dict(pins or DEFAULT_PINS)
        for pin in self._pins.values():
            gpio.setup(pin, gpio.OUT, initial=gpio.LOW)

    def write(self, name: str, on: bool) -> None:
        if self._sounding.get(name):
            self.tone(name, None)
        self._gpio.output(self._pins[name], self._gpio.HIGH if on else self._gpio.LOW)

    def tone(self, name: str, hz: float | None) -> None:
        if self._sounding.get(name) == hz:
            return
        pwm = self._pwm.get(name)
        if hz is None:
            if pwm is not None:
                pwm.stop()
            self._gpio.output(self._pins[name], self._gpio.LOW)
        elif pwm is None:
            pwm = self._pwm[name] = self._gpio.PWM(self._pins[name], hz)
            pwm.start(50)
        else:
            pwm.ChangeFrequency(hz)
            if not self._sounding.get(name):
                pwm.start(50)
        self._sounding[name] = hz

    def close(self) -> None:
        for pwm in self._pwm.values():
            pwm.stop()
        self._pwm.clear()
        self._sounding.clear()
        if self._pins:
            for pin in self._pins.values():
                self._gpio.output(pin, self._gpio.LOW)
            self._gpio.cleanup(list(self._pins.values()))
            self._pins = {}


def _writable_lgpio_dir() -> None:
    """lgpio (under rpi-lgpio, Pi 5) creates its notify pipe ``.lgd-nfy*`` in ``$LG_WD`` or
    the working directory; under ``ProtectSystem=strict`` the latter may be read-only ``/``.
    The unit sets ``LG_WD``; when nothing does, use the runtime directory or the temp dir."""
    if os.environ.get("LG_WD") or os.access(os.getcwd(), os.W_OK):
        return
    os.environ["LG_WD"] = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or (
        tempfile.gettempdir()
    )
