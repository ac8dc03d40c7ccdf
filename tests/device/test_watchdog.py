"""A unit without a camera keeps feeding systemd's watchdog and shows no_camera (issue #14).

systemd is stood in for by a real AF_UNIX datagram socket at ``$NOTIFY_SOCKET``, which is what
``common.sd_notify`` writes to; the lights are the simulated GPIO backend's recorded history.
"""

import itertools
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device.app import DeviceApp
from device.camera import CameraError, Frame, write_pgm
from device.gpio import SimulatedBackend
from device.indicator import PATTERNS
from harness.device_config import write_device
from harness.pki import Pki

WATCHDOG_S = 0.4  # WatchdogSec: systemd kills a unit silent for longer than this


class NotifySocket:
    """What systemd listens on: records (monotonic time, message) for every datagram."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sdn")  # short: AF_UNIX paths are small
        self.path = str(Path(self._dir.name) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, since: float = float("-inf")) -> list[float]:
        return [t for t, m in self.messages if t >= since and "WATCHDOG=1" in m.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        self._dir.cleanup()


@pytest.fixture
def notify(monkeypatch):
    sock = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    yield sock
    sock.close()


def assert_fed(pings: list[float], start: float, end: float) -> None:
    """Pings all along [start, end]: never a silence the watchdog would punish."""
    assert pings, "no WATCHDOG=1 at all"
    marks = [start, *pings, end]
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    assert max(gaps) < WATCHDOG_S, f"watchdog starved for {max(gaps):.3f} s"
    # at most one ping per half period (common.sd_notify), so roughly 2-4 per period
    assert len(pings) >= (end - start) / WATCHDOG_S * 1.5


def lit_together(backend: SimulatedBackend, leds: set[str]) -> int:
    """How many times exactly ``leds`` were lit at once (the state pattern's on-step)."""
    state = {"green": False, "red": False, "amber": False}
    count = 0
    history = backend.history
    for i, tr in enumerate(history):
        if tr.name in state:
            state[tr.name] = bool(tr.state)
        last_at_t = i + 1 == len(history) or history[i + 1].t != tr.t
        if last_at_t and {k for k, v in state.items() if v} == leds:
            count += 1
    return count


def test_no_camera_keeps_the_watchdog_fed_and_recovers_when_frames_appear(tmp_path, notify):
    frames = tmp_path / "frames"  # nothing there yet: the camera cannot be opened
    config = write_device(
        tmp_path,
        Pki(),
        camera={
            "source": "files",
            "paths": [str(frames)],
            "loop": True,
            "fps": 50,
            "reopen_min_s": 0.05,
            "reopen_max_s": 0.2,
        },
    )
    backend = SimulatedBackend()
    app = DeviceApp(config, backend=backend, connect=False)
    try:
        start = time.monotonic()
        app.run_for(seconds=2.0)
        no_camera_end = time.monotonic()
        assert app.state == "no_camera"
        assert app.health_snapshot()["camera"] == "missing"
        assert app.stats.frames == 0
        assert_fed(notify.pings(), start, no_camera_end)
        on_step = PATTERNS["state:no_camera"][0]
        assert {led for led, lit in on_step.on.items() if lit} == {"red", "amber"}
        assert lit_together(backend, {"red", "amber"}) >= 2  # the pattern loops (1 s period)
        assert not any(tr.name == "green" and tr.state for tr in backend.history)

        frames.mkdir()  # an empty folder is still no camera
        app.run_for(seconds=0.5)
        assert app.state == "no_camera"

        write_pgm(frames / "0001.pgm", np.full((120, 160), 200, np.uint8))
        recover_start = time.monotonic()
        app.run_for(seconds=1.0)
        end = time.monotonic()
        assert app.state == "idle"
        assert app.health_snapshot()["camera"] == "ok"
        assert app.stats.frames > 10
        assert_fed(notify.pings(), start, end)
        assert lit_together(backend, {"green"}) >= 1  # idle's green blip
        assert recover_start - start > 2.0
    finally:
        app.close()


class DyingCamera:
    """Delivers a few frames, then fails like an unplugged ribbon cable."""

    def __init__(self, frames: int) -> None:
        self.left = frames
        self.closed = False

    def read(self) -> Frame | None:
        if self.left == 0:
            raise CameraError("capture timed out")
        self.left -= 1
        time.sleep(0.01)
        return Frame(gray=np.zeros((48, 64), np.uint8), t=time.monotonic(), index=0)

    def close(self) -> None:
        self.closed = True


def test_a_camera_that_dies_mid_run_is_no_camera_not_a_restart(tmp_path, notify):
    config = write_device(
        tmp_path,
        Pki(),
        camera={
            "source": "files",
            "paths": [str(tmp_path / "absent")],
            "reopen_min_s": 0.05,
            "reopen_max_s": 0.1,
        },
    )
    dying = DyingCamera(frames=5)
    app = DeviceApp(config, source=dying, backend=SimulatedBackend(), connect=False)
    try:
        start = time.monotonic()
        app.run_for(seconds=1.5)
        end = time.monotonic()
        assert dying.closed
        assert app.stats.frames == 5
        assert app.state == "no_camera"
        assert app.health_snapshot()["camera"] == "missing"
        assert_fed(notify.pings(), start, end)
    finally:
        app.close()
