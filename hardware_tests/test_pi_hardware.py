"""On-device checks of the camera, decoders, LEDs and buzzer (see conftest.py for how to run).

    CHOT_HARDWARE=1 CHOT_EXPECTED_QR=/path/to/pass.txt pytest hardware_tests -v -s

``CHOT_EXPECTED_QR`` names a file holding the text of the printed pass the operator holds in
front of the camera (e.g. shared/vectors' qr_text printed with segno); the text is compared,
never printed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from device.decode import make_decoder
from device.gpio import DEFAULT_PINS
from device.gpio.base import BUZZER, LEDS
from device.indicator import FAIL_CODES, PATTERNS, WARN_CODES, Indicator
from device.picamera import PiCameraSettings, PiCameraSource


def pins() -> dict[str, int]:
    return json.loads(os.environ["CHOT_PINS"]) if "CHOT_PINS" in os.environ else DEFAULT_PINS


@pytest.fixture
def camera():
    with PiCameraSource(PiCameraSettings(640, 480)) as source:
        yield source


def test_camera_gives_grayscale_lores_frames(camera) -> None:
    frames = [camera.read() for _ in range(10)]
    assert all(f is not None and f.gray.shape == (480, 640) for f in frames)
    assert all(f.gray.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == list(range(10))
    assert frames[-1].t > frames[0].t
    assert frames[-1].gray.std() > 2, "image is flat: lens cap on, or no light?"


@pytest.mark.parametrize("decoder_name", ["zxing", "zbar"])
def test_printed_pass_decodes_from_the_camera(camera, decoder_name: str) -> None:
    path = os.environ.get("CHOT_EXPECTED_QR")
    if not path:
        pytest.skip("set CHOT_EXPECTED_QR to a file with the held-up pass's QR text")
    expected = Path(path).read_text().strip()
    decoder = make_decoder(decoder_name)
    print(f"\nhold the printed pass 20-40 cm in front of the camera ({decoder_name})...")
    deadline, seen, times = time.monotonic() + 15, 0, []
    while time.monotonic() < deadline and seen < 5:
        frame = camera.read()
        t = time.perf_counter()
        texts = decoder.decode(frame.gray)
        times.append(time.perf_counter() - t)
        seen += expected in texts
    print(f"{decoder_name}: {seen} decodes, median {1000 * float(np.median(times)):.1f} ms/frame")
    assert seen >= 5


def test_every_indicator_pattern_on_the_real_outputs() -> None:
    """Plays each pattern once for the operator to watch and hear; checks that nothing raises
    and that everything is off after close."""
    from device.gpio.rpigpio import RPiGPIOBackend

    reasons = {f"fail:{n}": r for r, n in reversed(FAIL_CODES.items())}
    reasons |= {f"warn:{n}": r for r, n in WARN_CODES.items()}
    backend = RPiGPIOBackend(pins())
    try:
        indicator = Indicator(backend, state="idle")
        for key, steps in PATTERNS.items():
            print(f"\n{key}", flush=True)
            kind, _, _ = key.partition(":")
            if kind == "state":
                indicator.state(key.removeprefix("state:"))
                time.sleep(max(2.0, sum(s.seconds for s in steps)))
                continue
            if kind == "pass":
                indicator.pass_()
            elif kind == "fail":
                indicator.fail(reasons.get(key, "unlisted_reason"))
            else:
                indicator.warn(reasons.get(key, "unlisted_reason"))
            time.sleep(sum(s.seconds for s in steps) + 0.3)
        indicator.close()
    finally:
        backend.close()


def test_backend_writes_and_tones_directly() -> None:
    from device.gpio.rpigpio import RPiGPIOBackend

    backend = RPiGPIOBackend(pins())
    try:
        for led in LEDS:
            backend.write(led, True)
            time.sleep(0.3)
            backend.write(led, False)
        for hz in (440, 1000, 2000, None):
            backend.tone(BUZZER, hz)
            time.sleep(0.2)
    finally:
        backend.close()
