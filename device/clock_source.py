"""How far the scanner may trust its wall clock (a Raspberry Pi has no RTC).

The system answer (``SyncProbe``) never forks and needs no CAP_SYS_TIME, because a unit runs
with ``ProtectClock=yes``, whose seccomp filter refuses even a read-only ``adjtimex`` (EPERM):

1. ``CHOT_CLOCK_STATE=synced|bounded|unknown`` (demo and tests);
2. ``adjtimex`` read-only where permitted: the kernel's ``STA_UNSYNC`` / ``TIME_ERROR``, which
   systemd-timesyncd, chrony and ntpd all clear while they discipline the clock;
3. where it is refused, systemd-timesyncd's ``/run/systemd/timesync/synchronized``, which it
   creates on its first synchronisation (``/run`` is empty again after a reboot). Units sync
   with timesyncd against their gateway (provisioning writes the drop-in); chrony's own
   state would need its command socket, which is root's, so it is read through adjtimex.

Anything else is UNKNOWN. The adjtimex reader is common/timesync.py's (libc loaded once by
name: ``ctypes.util.find_library`` would run ``ldconfig`` in a subprocess). The answer is cached by ``ClockSource`` for
``probe_interval_s``, so a decision costs at most one stat and one system call.

It is combined with a lower bound: the newest ``issued_at`` of any signed document (trust
list, revocation list, config) the device has accepted, advanced by the monotonic time elapsed
since. A clock that claims sync but reads earlier than that bound is wrong (a stale NTP
server, a spoofed reply), so it is only BOUNDED.

Without a synchronised system clock, the gateway's signed acks give a bounded clock
(``note_gateway_time``; the bound is in protocol/clock.py): while its error is within
``MAX_GATEWAY_ERROR_S`` a reading is SYNCED at the latest time the true time can be.
"""

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from common import timesync
from protocol.clock import Clock, ClockState, GatewayTime

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 10.0  # the kernel state changes slowly; do not ask on every frame
TIMESYNCD_MARKER = timesync.TIMESYNCD_MARKER


def read_adjtimex(libc: object = None) -> ClockState:
    """The kernel's answer (common/timesync.py, the one adjtimex reader) as a ClockState.
    Raises PermissionError when the call is refused (``ProtectClock=``, seccomp) and OSError
    when it is missing or fails otherwise."""
    return ClockState.SYNCED if timesync.read_adjtimex(libc) else ClockState.UNKNOWN


class SyncProbe:
    """The system's answer to "is the clock synchronised?" (see the module docstring)."""

    def __init__(
        self,
        *,
        marker: Path = TIMESYNCD_MARKER,
        adjtimex: Callable[[], ClockState] = read_adjtimex,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.marker = Path(marker)
        self._adjtimex = adjtimex
        self._env = os.environ if env is None else env
        self._adjtimex_refused = False

    def __call__(self) -> ClockState:
        override = self._env.get("CHOT_CLOCK_STATE")
        if override:
            return ClockState(override)
        if not self._adjtimex_refused:
            try:
                return self._adjtimex()
            except PermissionError:
                # the refusal is the unit's hardening and does not change while it runs
                log.info("adjtimex refused (ProtectClock); reading %s instead", self.marker)
                self._adjtimex_refused = True
            except OSError as exc:
                log.debug("adjtimex unavailable (%s); reading %s", exc, self.marker)
        try:
            return ClockState.SYNCED if self.marker.exists() else ClockState.UNKNOWN
        except OSError:
            return ClockState.UNKNOWN


def system_clock_state() -> ClockState:
    """The override, else the kernel, else timesyncd's marker, else UNKNOWN."""
    return SyncProbe()()


class ClockSource:
    """Produces ``Clock`` readings for the decider; cheap to call on every frame."""

    def __init__(
        self,
        *,
        probe: Callable[[], ClockState] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._probe = probe if probe is not None else SyncProbe()
        self._wall = wall
        self._monotonic = monotonic
        self._probe_interval_s = probe_interval_s
        self._state: ClockState | None = None
        self._probed_at = float("-inf")
        self._bound: tuple[int, float] | None = None  # (issued_at, monotonic when seen)
        self._gateway: GatewayTime | None = None  # the tightest signed gateway time so far

    def note_document(self, issued_at: int) -> None:
        """A signed document proves that true time is at least its issued_at."""
        if self._bound is None or issued_at > self.lower_bound_now():
            self._bound = (int(issued_at), self._monotonic())

    def note_gateway_time(self, reading: GatewayTime) -> None:
        """A signed ack carried the gateway's time: keep whichever reading bounds now
        tighter (a fresh one from a quick exchange usually wins)."""
        now = self._monotonic()
        new = reading.bound(now)
        if new is None:
            return
        old = self._gateway.bound(now) if self._gateway else None
        if old is None or new[1] <= old[1]:
            if self._gateway is None:
                log.info("clock bounded by gateway time, error %.1f s", new[1])
            self._gateway = reading

    def gateway_bound(self) -> tuple[float, float] | None:
        """(estimate, error) of true time from the gateway, or None."""
        return self._gateway.bound(self._monotonic()) if self._gateway else None

    def lower_bound_now(self) -> int | None:
        if self._bound is None:
            return None
        issued_at, seen_at = self._bound
        return issued_at + int(self._monotonic() - seen_at)

    def system_state(self) -> ClockState:
        now = self._monotonic()
        if self._state is None or now - self._probed_at >= self._probe_interval_s:
            state = self._probe()
            if state is not self._state:
                log.info("system clock state %s", state.value)
            self._state, self._probed_at = state, now
        return self._state

    def read(self) -> Clock:
        now = int(self._wall())
        bound = self.lower_bound_now()
        state = self.system_state()
        if state is ClockState.SYNCED and (bound is None or now >= bound):
            return Clock(now, ClockState.SYNCED, bound)
        gateway = self.gateway_bound()
        if gateway is not None:
            estimate, error = gateway
            latest = math.ceil(estimate + error)  # exp is never passed early
            return Clock(latest, ClockState.SYNCED, max(bound or 0, int(estimate - error)))
        if bound is not None:
            return Clock(now, ClockState.BOUNDED, bound)
        return Clock(now, ClockState.UNKNOWN, None)
