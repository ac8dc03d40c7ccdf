"""Health numbers for the heartbeat (systemd's notify protocol lives in common/sd_notify.py).

``Health`` is fed by the scan loop (one call per frame, O(1)) and read by the uplink thread.
``common.sd_notify.SystemdNotifier`` speaks sd_notify(3) over ``$NOTIFY_SOCKET`` with a plain
datagram socket (no libsystemd binding needed): READY=1 once booted, WATCHDOG=1 from the scan
loop on every turn (with or without a camera), so only a loop that hangs (camera driver,
decoder) is restarted by systemd.
"""

import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.outbox import Outbox
    from protocol.clock import Clock

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temp_c(path: Path = THERMAL_ZONE) -> float | None:
    """CPU temperature in °C (the file holds millidegrees); None off a Pi."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class Health:
    """Frames per second over the last few seconds and a decoder-time EWMA."""

    def __init__(self, alpha: float = 0.05, window_s: float = 5.0) -> None:
        self._alpha = alpha
        self._window_s = window_s
        self._times: deque[float] = deque(maxlen=2048)
        self._lock = threading.Lock()
        self.decoder_ms = 0.0
        self.frames = 0
        self.unrecorded = 0  # decisions the outbox could not store (disk full)

    def frame(self, decode_s: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        ms = decode_s * 1000.0
        with self._lock:
            self.frames += 1
            self._times.append(now)
            first = self.frames == 1
            self.decoder_ms = (
                ms if first else self.decoder_ms + self._alpha * (ms - self.decoder_ms)
            )

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._times if now - t <= self._window_s]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1] - recent[0], 1e-6)
        return (len(recent) - 1) / span


def snapshot(
    health: Health,
    outbox: "Outbox",
    clock: "Clock",
    *,
    outbox_failed: bool,
    trust_version: int | None,
    state: str,
    camera: str = "ok",
) -> dict[str, Any]:
    """The heartbeat's health fields: what an operator needs to see a unit that cannot scan,
    record or deliver (``outbox_failed``: the last append hit a full disk; ``camera``:
    ``ok`` or ``missing`` while the source cannot be opened or stopped delivering)."""
    snap: dict[str, Any] = {
        "fps": round(health.fps(), 1),
        "decoder_ms": round(health.decoder_ms, 2),
        "outbox_depth": outbox.depth,
        "outbox_full": outbox.full or outbox_failed,
        "unrecorded": health.unrecorded,
        "seq": outbox.last_seq,
        "clock": clock.state.value,
        "trust_version": trust_version,
        "state": state,
        "camera": camera,
    }
    temp = cpu_temp_c()
    if temp is not None:
        snap["cpu_temp"] = temp
    return snap
