"""Virtual time for code whose sleeps go through an injected clock (the Indicator's player).

`now()` only moves when the test calls `advance`. A thread sleeping in `wait(stopping, s)`
wakes when virtual time reaches its deadline or when `stopping` is set. `advance` moves time
deadline by deadline and, before each move, lets the sleepers settle (each one back in `wait`
with a deadline still ahead), so what a pattern does at virtual time t has happened before
time passes t: timings are exact and the test never sleeps in real time.
"""

import threading
import time
from dataclasses import dataclass

SETTLE_TIMEOUT_S = 5.0  # real seconds a sleeper may take to get back into wait()
POLL_S = 0.002  # real seconds between looks at an Event we cannot be notified of


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    stopping: threading.Event


class VirtualClock:
    """A `PlayerClock` (device.indicator) on virtual time; `now` also serves as a backend's
    timestamp clock so recorded transitions share the same time scale."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._sleepers: list[_Sleeper] = []

    def now(self) -> float:
        with self._cond:
            return self._now

    def wait(self, stopping: threading.Event, seconds: float) -> bool:
        with self._cond:
            me = _Sleeper(self._now + max(0.0, seconds), stopping)
            self._sleepers.append(me)
            self._cond.notify_all()
            try:
                while not stopping.is_set() and self._now < me.deadline:
                    self._cond.wait(POLL_S)
                return stopping.is_set()
            finally:
                self._sleepers.remove(me)
                self._cond.notify_all()

    def settle(self, sleepers: int = 1) -> None:
        """Wait (in real time) until `sleepers` threads sleep with a deadline ahead and no stop
        request pending: whatever the last command or time step caused has been played."""
        give_up = time.monotonic() + SETTLE_TIMEOUT_S
        with self._cond:
            while not self._settled(sleepers):
                if time.monotonic() > give_up:
                    raise AssertionError(f"sleepers did not settle: {self._sleepers}")
                self._cond.wait(POLL_S)

    def _settled(self, sleepers: int) -> bool:
        return len(self._sleepers) == sleepers and all(
            not s.stopping.is_set() and s.deadline > self._now for s in self._sleepers
        )

    def advance(self, seconds: float, sleepers: int = 1) -> None:
        """Move virtual time forward by `seconds`, waking each sleeper at its own deadline."""
        with self._cond:
            end = self._now + seconds
        while True:
            self.settle(sleepers)
            with self._cond:
                due = [s.deadline for s in self._sleepers if s.deadline <= end]
                self._now = min(due) if due else end
                self._cond.notify_all()
                if not due:
                    return
