"""Sequence gap warnings, at most one line per device per minute.

A gap is worth a warning: an event of that unit is missing. But a stolen unit sending seq
1, 3, 5, ... opens one gap per event, 7,500 lines for 7,500 events, and would drown the log
(and the SD card it is written to). So a device's first gap is logged at once; the gaps it
opens in the following `interval_s` are only counted, and summed into one summary line when
the interval is over (at that device's next gap, or at any later gap or `flush_due` call).
The figures themselves are exact in the store (`devices.gap_*`, /metrics); this is the log.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SUMMARY_INTERVAL_S = 60.0


@dataclass
class _Window:
    """One device's current interval: when it opened, and what was counted, not logged."""

    started: float
    gaps: int = 0
    missing: int = 0
    lo: int = 0  # lowest and highest seq of the gaps counted
    hi: int = 0


class GapWarnings:
    """Rate-limited gap warnings; thread-safe (the store's writer and its maintenance)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.interval_s = interval_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def opened(self, dev: str, lo: int, hi: int, ep: int | None = None) -> None:
        """A gap lo..hi of `dev` (outbox epoch `ep`) was opened: log it, or count it."""
        now = self.clock()
        with self._lock:
            self._summarise_due(now)
            window = self._windows.get(dev)
            if window is not None:
                window.gaps += 1
                window.missing += hi - lo + 1
                window.lo = lo if window.gaps == 1 else min(window.lo, lo)
                window.hi = max(window.hi, hi)
                return
            self._windows[dev] = _Window(started=now)
        epoch = "" if ep is None else f" ep={ep}"
        self.log.warning("sequence gap device=%s%s missing=%d..%d", dev, epoch, lo, hi)

    def flush_due(self) -> None:
        """Write the summaries of intervals that are over (also called by maintenance)."""
        with self._lock:
            self._summarise_due(self.clock())

    def _summarise_due(self, now: float) -> None:
        for dev, window in list(self._windows.items()):
            if now - window.started < self.interval_s:
                continue
            del self._windows[dev]
            if window.gaps:
                self.log.warning(
                    "sequence gaps device=%s: %d more gaps, %d seqs missing in %d..%d "
                    "over the last %.0f s (one line per device per %.0f s)",
                    dev,
                    window.gaps,
                    window.missing,
                    window.lo,
                    window.hi,
                    now - window.started,
                    self.interval_s,
                )
