"""LED + buzzer feedback: what the person at the checkpoint and the staff see and hear.

Patterns are data (``PATTERNS``) so the tests, the docs table (``python -m device.indicator``)
and the player all read one table. One background thread plays them; its sleeps are
``clock.wait(stopping, t)`` (``Event.wait`` on the real clock) so a new command cuts the
running pattern off at once (gpiozero's ``_blink_device``), and callers only store the latest
command and return. The clock is injected, so tests drive the patterns in virtual time.

A transient pattern (pass / fail / warn) plays once; then the steady device-state pattern
(booting, no_camera, offline, outbox_full, idle) resumes from its start and loops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from device.gpio.base import BUZZER, LEDS, OutputBackend

log = logging.getLogger(__name__)


class PlayerClock(Protocol):
    """What the player thread reads and sleeps on."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wait(self, stopping: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds`` or until ``stopping`` is set; True when it was set."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``Event.wait``."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, stopping: threading.Event, seconds: float) -> bool:
        return stopping.wait(seconds)


class Step(NamedTuple):
    """Hold this output state for ``seconds``: LEDs in ``on`` mapped to True are lit, every
    other LED is off; the buzzer sounds ``tone_hz`` or is silent when None."""

    seconds: float
    on: Mapping[str, bool]
    tone_hz: float | None = None


HIGH_HZ = 2000.0  # pass: short high chirp
MID_HZ = 1000.0  # warn: two short pips
LOW_HZ = 440.0  # fail: long low buzz, distinct even for people who cannot see the LEDs


def _blinks(led: str, count: int) -> tuple[Step, ...]:
    return (Step(0.25, {led: True}), Step(0.25, {})) * count


_FAIL_HEAD = (Step(0.6, {"red": True}, LOW_HZ), Step(0.4, {"red": True}), Step(0.5, {}))
_WARN_HEAD = (
    Step(0.1, {"amber": True}, MID_HZ),
    Step(0.1, {"amber": True}),
    Step(0.1, {"amber": True}, MID_HZ),
    Step(0.7, {"amber": True}),
    Step(0.5, {}),
)

#: Fail reason -> number of red blinks after the long buzz. Staff read the count; the
#: person in front only needs "red + long buzz = not accepted".
FAIL_CODES: dict[str, int] = {
    **dict.fromkeys(
        (
            "bad_signature",
            "unknown_kid",
            "issuer_mismatch",
            "bad_cose",
            "bad_alg",
            "bad_claims",
            "not_chot",
            "bad_base45",
            "bad_zlib",
            "too_large",
            "bad_cbor",
        ),
        1,
    ),
    "expired": 2,
    "not_yet_valid": 2,
    "validity_too_long": 2,  # valid longer than its kind allows: a validity refusal
    "revoked": 3,
    "duplicate_recent": 4,
    "kind_not_allowed": 5,
    # EU Digital COVID Certificates (protocol/dcc.py)
    "dsc_not_in_force": 2,
    "dsc_kind_not_allowed": 5,
    "wrong_disease": 5,
    "vaccination_incomplete": 6,
    "vaccination_too_recent": 6,
    "test_positive": 7,
    "test_too_old": 7,
    "recovery_not_valid": 8,
}
FAIL_MEANING = {
    1: "forged, damaged or unknown issuer (not a valid chot pass)",
    2: "outside its validity time (expired, not yet valid, or longer than its kind allows)",
    3: "revoked",
    4: "already scanned here moments ago",
    5: "pass kind not accepted at this checkpoint",
    6: "vaccination course not complete, or last dose too recent",
    7: "test positive, or sample too old",
    8: "recovery certificate outside its validity",
}
WARN_CODES: dict[str, int] = {"clock_untrusted": 1, "trust_stale": 2}
WARN_MEANING = {
    1: "device clock not trusted (no time sync): validity times unchecked",
    2: "trust list (issuer keys / revocations) out of date",
}
STATES = ("booting", "no_camera", "offline", "outbox_full", "idle")

PATTERNS: dict[str, tuple[Step, ...]] = {
    "pass": (Step(0.12, {"green": True}, HIGH_HZ), Step(0.88, {"green": True})),
    # A reason this table does not know still fails loudly, just without a blink code.
    "fail": _FAIL_HEAD,
    **{f"fail:{n}": _FAIL_HEAD + _blinks("red", n) for n in FAIL_MEANING},
    "warn": _WARN_HEAD,
    **{f"warn:{n}": _WARN_HEAD + _blinks("amber", n) for n in WARN_MEANING},
    # Steady states loop; none of them beeps, so a quiet unit is never mistaken for a scan.
    "state:booting": (Step(0.5, {"amber": True}), Step(0.5, {})),
    "state:no_camera": (Step(0.5, {"red": True, "amber": True}), Step(0.5, {})),
    "state:offline": (Step(0.1, {"amber": True}), Step(1.9, {})),
    "state:outbox_full": (Step(1.0, {"amber": True}),),
    "state:idle": (Step(0.05, {"green": True}), Step(2.95, {})),
}


def _reason_key(reason: str) -> str:
    """Reasons may carry detail after the code ("not_yet_valid (iat in the future)")."""
    words = reason.strip().split()
    return words[0] if words else ""


def fail_pattern(reason: str) -> str:
    code = FAIL_CODES.get(_reason_key(reason))
    return f"fail:{code}" if code else "fail"


def warn_pattern(reason: str) -> str:
    code = WARN_CODES.get(_reason_key(reason))
    return f"warn:{code}" if code else "warn"


class Indicator:
    """Plays ``PATTERNS`` on an output backend. Methods never block: they store the latest
    command and wake the player thread. The backend stays owned by the caller: ``close``
    stops the thread and turns every output off, it does not close the backend."""

    def __init__(
        self,
        backend: OutputBackend,
        *,
        clock: PlayerClock | None = None,
        state: str = "booting",
    ) -> None:
        self._backend = backend
        self._clock: PlayerClock = clock or MonotonicClock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state = self._state_key(state)
        self._pending: str | None = None
        self._transient_playing = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="indicator", daemon=True)
        self._thread.start()

    # -- commands (called from the scan loop; return at once) --------------------------
    def pass_(self) -> None:
        self._command("pass")

    def fail(self, reason: str) -> None:
        self._command(fail_pattern(reason))

    def warn(self, reason: str) -> None:
        self._command(warn_pattern(reason))

    def state(self, name: str) -> None:
        """Set the steady background pattern; a running pass/fail/warn still finishes."""
        key = self._state_key(name)
        with self._lock:
            if key == self._state:
                return
            self._state = key
            if not self._transient_playing and self._pending is None:
                self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._closing = True
            self._wake.set()
        self._thread.join(timeout)
        self._all_off()

    def __enter__(self) -> Indicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _state_key(name: str) -> str:
        if name not in STATES:
            raise ValueError(f"unknown device state {name!r}; expected one of {STATES}")
        return f"state:{name}"

    def _command(self, key: str) -> None:
        with self._lock:
            if self._closing:
                return
            self._pending = key
            self._wake.set()

    # -- player thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                self._wake.clear()
                key = self._pending or self._state
                self._transient_playing = self._pending is not None
                self._pending = None
            try:
                self._play(PATTERNS[key])
            except Exception:  # a flaky output must not kill the feedback thread
                log.exception("indicator output failed while playing %s", key)
                self._clock.wait(self._wake, 1.0)

    def _play(self, steps: tuple[Step, ...]) -> None:
        """Deadlines are absolute so slow writes do not stretch the pattern."""
        deadline = self._clock.now()
        for step in steps:
            self._apply(step)
            deadline += step.seconds
            if self._clock.wait(self._wake, max(0.0, deadline - self._clock.now())):
                return

    def _apply(self, step: Step) -> None:
        for led in LEDS:
            self._backend.write(led, bool(step.on.get(led, False)))
        self._backend.tone(BUZZER, step.tone_hz)

    def _all_off(self) -> None:
        self._apply(Step(0.0, {}))


def patterns_markdown() -> str:
    """The pattern table for device/DECODERS.md, generated so docs cannot drift."""

    def one(s: Step) -> str:
        lit = "+".join(n for n in LEDS if s.on.get(n)) or "off"
        return f"{lit}{f' ♪{s.tone_hz:.0f}Hz' if s.tone_hz else ''} {s.seconds:g}s"

    def show(steps: tuple[Step, ...]) -> str:
        parts, i = [], 0
        while i < len(steps):  # write blink codes as "(red 0.25s, off 0.25s) ×3"
            pair, n = steps[i : i + 2], 1
            while len(pair) == 2 and steps[i + 2 * n : i + 2 * n + 2] == pair:
                n += 1
            if n > 1:
                parts.append(f"({one(pair[0])}, {one(pair[1])}) ×{n}")
                i += 2 * n
            else:
                parts.append(one(steps[i]))
                i += 1
        return ", ".join(parts)

    meaning = {"pass": "accepted", "fail": "rejected, reason not in the table", "warn": "warning"}
    meaning |= {f"fail:{n}": f"rejected: {m}" for n, m in FAIL_MEANING.items()}
    meaning |= {f"warn:{n}": f"warning: {m}" for n, m in WARN_MEANING.items()}
    meaning |= {f"state:{s}": f"device state {s} (loops)" for s in STATES}
    reasons: dict[str, list[str]] = {}
    for reason, n in FAIL_CODES.items():
        reasons.setdefault(f"fail:{n}", []).append(reason)
    for reason, n in WARN_CODES.items():
        reasons.setdefault(f"warn:{n}", []).append(reason)
    rows = ["| pattern | meaning | reasons | steps (duration each) |", "|---|---|---|---|"]
    for key, steps in PATTERNS.items():
        why = ", ".join(f"`{r}`" for r in reasons.get(key, [])) or "-"
        rows.append(f"| `{key}` | {meaning[key]} | {why} | {show(steps)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(patterns_markdown())
