"""Indicator patterns played on the simulated backend, checked against the PATTERNS table.

The timing tests run the player on a virtual clock (tests/support/virtual_clock.py): the same
clock stamps the backend's history, so a transition's time is where the pattern put it, and
the tests never sleep in real time."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import pytest

from device.gpio import DEFAULT_PINS, make_backend
from device.gpio.base import BUZZER, LEDS
from device.gpio.simulated import SimulatedBackend
from device.indicator import (
    FAIL_CODES,
    HIGH_HZ,
    PATTERNS,
    STATES,
    WARN_CODES,
    Indicator,
    Step,
    fail_pattern,
    patterns_markdown,
    warn_pattern,
)
from tests.support.virtual_clock import VirtualClock

TOLERANCE = 1e-6  # seconds; virtual time is exact up to float rounding


def expected_transitions(steps: tuple[Step, ...]) -> tuple[list[tuple[float, str, object]], float]:
    """(offset, name, state) changes a pattern makes starting from all-off, and its length."""
    state: dict[str, object] = dict.fromkeys(LEDS, False) | {BUZZER: None}
    out, t = [], 0.0
    for step in steps:
        new = {led: bool(step.on.get(led, False)) for led in LEDS} | {BUZZER: step.tone_hz}
        out += [(t, n, new[n]) for n in (*LEDS, BUZZER) if new[n] != state[n]]
        state, t = new, t + step.seconds
    return out, t


def quiet_indicator() -> tuple[Indicator, SimulatedBackend, VirtualClock]:
    """An indicator on virtual time whose background (idle) has just finished its short blip."""
    clock = VirtualClock()
    backend = SimulatedBackend(clock=clock.now)
    backend.setup(DEFAULT_PINS)
    indicator = Indicator(backend, clock=clock, state="idle")
    clock.advance(0.1)
    backend.clear_history()
    return indicator, backend, clock


def since(backend: SimulatedBackend, t0: float, until: float) -> list[tuple[float, str, object]]:
    return [(t - t0, n, s) for t, n, s in backend.history if 0 <= t - t0 < until]


def test_every_transient_pattern_plays_its_table_timings() -> None:
    """Every transient pattern, each on its own indicator and virtual clock."""
    commands = {"pass": lambda i: i.pass_(), "fail": lambda i: i.fail("unlisted_reason")}
    commands["warn"] = lambda i: i.warn("unlisted_reason")
    for reason in FAIL_CODES:
        commands[fail_pattern(reason)] = lambda i, r=reason: i.fail(r)
    for reason in WARN_CODES:
        commands[warn_pattern(reason)] = lambda i, r=reason: i.warn(r)
    keys = [k for k in PATTERNS if not k.startswith("state:")]
    assert sorted(commands) == sorted(keys)  # every transient pattern is reachable
    for key in keys:
        indicator, backend, clock = quiet_indicator()
        start = clock.now()
        commands[key](indicator)
        want, length = expected_transitions(PATTERNS[key])
        clock.advance(length + 0.1)
        got = since(backend, start, length - TOLERANCE)
        indicator.close()
        assert [(n, s) for _, n, s in got] == [(n, s) for _, n, s in want], key
        for (t_got, name, _), (t_want, _, _) in zip(got, want, strict=True):
            assert abs(t_got - t_want) <= TOLERANCE, (key, name, t_got, t_want)


@pytest.mark.parametrize("reason", sorted(FAIL_CODES))
def test_each_fail_reason_has_its_blink_group(reason: str) -> None:
    group = FAIL_CODES[reason]
    steps = PATTERNS[fail_pattern(reason)]
    red_on = [s for s in steps if s.on.get("red") and s.tone_hz is None and s.seconds == 0.25]
    assert len(red_on) == group
    assert steps[0].on == {"red": True} and steps[0].tone_hz and steps[0].seconds >= 0.5


def test_blink_groups_match_the_spec() -> None:
    forged = {"bad_signature", "unknown_kid", "issuer_mismatch", "bad_cose", "bad_alg"}
    forged |= {"bad_claims", "not_chot", "bad_base45", "bad_zlib", "too_large", "bad_cbor"}
    assert {r for r, n in FAIL_CODES.items() if n == 1} == forged
    assert fail_pattern("expired") == fail_pattern("not_yet_valid") == "fail:2"
    assert fail_pattern("not_yet_valid (iat in the future beyond allowed skew)") == "fail:2"
    assert fail_pattern("revoked") == "fail:3"
    assert fail_pattern("duplicate_recent") == "fail:4"
    assert fail_pattern("kind_not_allowed") == "fail:5"
    assert fail_pattern("something_new") == "fail"
    assert {warn_pattern(r) for r in WARN_CODES} == {"warn:1", "warn:2"}
    assert warn_pattern("") == "warn"


def test_new_command_cuts_the_running_pattern() -> None:
    indicator, backend, clock = quiet_indicator()
    indicator.fail("kind_not_allowed")
    clock.advance(0.3)  # inside the long red buzz
    t_cut = clock.now()
    indicator.pass_()
    clock.advance(0.2)
    after = since(backend, t_cut, 10)
    indicator.close()
    assert {(n, s) for _, n, s in after[:3]} == {("red", False), ("green", True), (BUZZER, HIGH_HZ)}
    assert all(t <= TOLERANCE for t, _, _ in after[:3])
    assert not any(n == "red" and s for _, n, s in after)


def test_device_state_resumes_after_transient_and_does_not_cut_it() -> None:
    indicator, backend, clock = quiet_indicator()
    t0 = clock.now()
    indicator.pass_()
    clock.advance(0.2)
    indicator.state("no_camera")  # must wait for the pass to finish
    pass_len = expected_transitions(PATTERNS["pass"])[1]
    clock.advance(pass_len + 0.2)
    got = since(backend, t0, 10)
    indicator.close()
    green_off = next(t for t, n, s in got if n == "green" and not s)
    red_on = next(t for t, n, s in got if n == "red" and s)
    amber_on = next(t for t, n, s in got if n == "amber" and s)
    assert abs(green_off - pass_len) <= TOLERANCE
    assert abs(red_on - pass_len) <= TOLERANCE and abs(amber_on - pass_len) <= TOLERANCE


def test_state_change_while_idle_applies_at_once() -> None:
    indicator, backend, clock = quiet_indicator()
    t0 = clock.now()
    indicator.state("outbox_full")
    clock.advance(0.1)
    got = since(backend, t0, 10)
    indicator.close()
    assert got and got[0][1:] == ("amber", True) and got[0][0] <= TOLERANCE
    with pytest.raises(ValueError, match="unknown device state"):
        indicator.state("on_fire")


class SlowBackend(SimulatedBackend):
    """A backend whose writes take 50 ms, like a wedged I2C expander would."""

    def write(self, name: str, on: bool) -> None:
        time.sleep(0.05)
        super().write(name, on)


def test_calls_never_block_the_caller() -> None:
    backend = SlowBackend()
    backend.setup(DEFAULT_PINS)
    indicator = Indicator(backend)
    worst = 0.0
    for i in range(50):
        for call in (
            indicator.pass_,
            lambda: indicator.fail("revoked"),
            lambda: indicator.warn("trust_stale"),
            lambda s=STATES[i % len(STATES)]: indicator.state(s),
        ):
            t = time.perf_counter()
            call()
            worst = max(worst, time.perf_counter() - t)
    indicator.close()
    assert worst < 0.005


def test_close_turns_everything_off_and_stops_the_thread() -> None:
    indicator, backend, clock = quiet_indicator()
    indicator.pass_()
    clock.settle()  # the player has taken the command
    assert backend.state("green") and backend.state(BUZZER)
    indicator.close()
    assert not any(backend.state(n) for n in (*LEDS, BUZZER))
    assert not any(t.name == "indicator" and t.is_alive() for t in threading.enumerate())
    n = len(backend.history)
    indicator.fail("revoked")  # ignored after close: no thread is left to play it
    assert len(backend.history) == n
    assert not backend.closed  # the backend belongs to the caller


def test_render_draws_one_line() -> None:
    backend = SimulatedBackend()
    backend.setup(DEFAULT_PINS)
    assert backend.render() == "[○ green][○ red][○ amber][  quiet  ]"
    backend.write("green", True)
    backend.tone(BUZZER, 2000)
    assert backend.render() == "[● green][○ red][○ amber][♪ 2000 Hz]"
    with pytest.raises(KeyError):
        backend.write("blue", True)


def test_make_backend_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOT_GPIO_BACKEND", "simulated")
    assert isinstance(make_backend("rpigpio"), SimulatedBackend)
    monkeypatch.setenv("CHOT_GPIO_BACKEND", "pigpio")
    with pytest.raises(ValueError, match="unknown GPIO backend 'pigpio'"):
        make_backend()
    monkeypatch.delenv("CHOT_GPIO_BACKEND")
    assert isinstance(make_backend(), SimulatedBackend)


def test_rpigpio_backend_drives_the_gpio_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Pi here: a recording stand-in for RPi.GPIO checks the calls the backend makes."""
    calls: list[tuple] = []

    class PWM:
        def __init__(self, pin: int, hz: float) -> None:
            calls.append(("PWM", pin, hz))

        def start(self, duty: float) -> None:
            calls.append(("start", duty))

        def ChangeFrequency(self, hz: float) -> None:
            calls.append(("freq", hz))

        def stop(self) -> None:
            calls.append(("stop",))

    gpio = types.SimpleNamespace(
        BCM="BCM",
        OUT="OUT",
        LOW=0,
        HIGH=1,
        PWM=PWM,
        setwarnings=lambda flag: None,
        setmode=lambda mode: calls.append(("mode", mode)),
        setup=lambda pin, mode, initial: calls.append(("setup", pin, initial)),
        output=lambda pin, level: calls.append(("out", pin, level)),
        cleanup=lambda pins: calls.append(("cleanup", sorted(pins))),
    )
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", rpi)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    monkeypatch.delenv("CHOT_GPIO_BACKEND", raising=False)

    backend = make_backend("rpigpio", DEFAULT_PINS)
    assert ("mode", "BCM") in calls
    assert {c[1] for c in calls if c[0] == "setup"} == set(DEFAULT_PINS.values())
    calls.clear()
    backend.write("green", True)
    backend.tone("buzzer", 2000)
    backend.tone("buzzer", 440)
    backend.tone("buzzer", None)
    backend.tone("buzzer", 1000)
    backend.close()
    buzzer = DEFAULT_PINS["buzzer"]
    assert calls[:6] == [
        ("out", DEFAULT_PINS["green"], 1),
        ("PWM", buzzer, 2000),  # one PWM object per pin, ever
        ("start", 50),
        ("freq", 440),
        ("stop",),
        ("out", buzzer, 0),
    ]
    assert calls[6:8] == [("freq", 1000), ("start", 50)]
    assert calls[-1] == ("cleanup", sorted(DEFAULT_PINS.values()))


def test_rpigpio_missing_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)
    monkeypatch.delenv("CHOT_GPIO_BACKEND", raising=False)
    with pytest.raises(RuntimeError, match="rpi-lgpio"):
        make_backend("rpigpio")


def test_docs_table_is_generated_from_patterns() -> None:
    doc = Path(__file__).resolve().parents[2] / "device" / "DECODERS.md"
    assert patterns_markdown() in doc.read_text(encoding="utf-8")
