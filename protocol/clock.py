"""What the verifier may believe about "now".

A Raspberry Pi has no RTC: after a power cut without network its clock may be years off. The
verifier is told how far it can trust the clock and refuses to show green on a time check it
cannot make.
"""

from dataclasses import dataclass
from enum import StrEnum


class ClockState(StrEnum):
    SYNCED = "synced"  # NTP (or similar) says the system clock is right
    BOUNDED = "bounded"  # only a lower bound is known: the newest signed document seen
    UNKNOWN = "unknown"  # nothing known: every time-dependent check is untrusted


@dataclass(frozen=True)
class Clock:
    """A reading: `now` is the device's time in Unix seconds, `state` how far it can be trusted.

    `lower_bound` is the newest trustworthy time seen (e.g. the issued-at of the newest signed
    trust list); with state BOUNDED the true time is known to be >= lower_bound, nothing more.
    """

    now: int
    state: ClockState = ClockState.SYNCED
    lower_bound: int | None = None

    @classmethod
    def synced(cls, now: int) -> "Clock":
        return cls(now=int(now), state=ClockState.SYNCED)

    @property
    def trusted(self) -> bool:
        return self.state is ClockState.SYNCED
