"""A backend with no hardware: it records transitions for tests and draws lights for the demo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from common.i18n import N_, Translator
from device.gpio.base import BUZZER, LEDS

LIGHT_NAMES = {"green": N_("green"), "red": N_("red"), "amber": N_("amber")}
QUIET = N_("quiet")


class Transition(NamedTuple):
    """One output change. ``state`` is a bool for LEDs; for tones it is the frequency in Hz
    while sounding and ``None`` when silent, so ``bool(state)`` always means "active"."""

    t: float
    name: str
    state: bool | float | None


class SimulatedBackend:
    """Keeps the current state of every output and a thread-safe ``history`` of changes.

    Only changes are recorded (writing the same state twice adds nothing), which is what a
    test of timings wants to compare. ``on_change`` is called after each change, outside the
    lock, e.g. with ``lambda b: print(b.render(), end="\\r")`` for a terminal demo.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[SimulatedBackend], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self.pins: dict[str, int] = {}
        self._state: dict[str, bool | float | None] = {}
        self._history: list[Transition] = []
        self.closed = False

    def setup(self, pins: dict[str, int]) -> None:
        with self._lock:
            self.pins = dict(pins)
            for name in pins:
                self._state[name] = None if name == BUZZER else False

    def write(self, name: str, on: bool) -> None:
        self._set(name, bool(on))

    def tone(self, name: str, hz: float | None) -> None:
        self._set(name, float(hz) if hz else None)

    def close(self) -> None:
        for name in list(self._state):
            self._set(name, None if name == BUZZER else False)
        self.closed = True

    def _set(self, name: str, state: bool | float | None) -> None:
        with self._lock:
            if name not in self._state:
                raise KeyError(f"output {name!r} was not set up")
            if self._state[name] == state:
                return
            self._state[name] = state
            self._history.append(Transition(self._clock(), name, state))
        if self._on_change is not None:
            self._on_change(self)

    @property
    def history(self) -> list[Transition]:
        """A copy of the recorded transitions, oldest first."""
        with self._lock:
            return list(self._history)

    def state(self, name: str) -> bool | float | None:
        with self._lock:
            return self._state[name]

    def clear_history(self) -> None:
        with self._lock:
            self._history.clear()

    def render(self, tr: Translator | None = None) -> str:
        """One line such as ``[● green][○ red][○ amber][♪ 2000 Hz]`` for the terminal demo;
        with a Translator the lights are named in the reader's language (``[● xanh]``)."""
        with self._lock:
            state = dict(self._state)
        name = (lambda n: tr.gettext(LIGHT_NAMES[n])) if tr else (lambda n: n)
        parts = [f"[{'●' if state.get(n) else '○'} {name(n)}]" for n in LEDS if n in state]
        hz = state.get(BUZZER)
        quiet = tr.gettext(QUIET) if tr else "quiet"
        parts.append(f"[♪ {hz:.0f} Hz]" if hz else f"[{quiet:^9}]")
        return "".join(parts)
