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


# --- a unit's clock from its gateway's signed acks ------------------------------------------
#
# A unit whose own NTP does not work (a site without internet, where only the gateway has a
# time source) takes its gateway's time from the signed acks (protocol/ack.py). The gateway
# signs `t_ms` somewhere between the moment the unit sent what the ack answers (an event or a
# heartbeat, `sent_mono`) and the moment the ack arrived (`recv_mono`), so at arrival the true
# time lies in [t - e_gw, t + e_gw + rtt] with rtt = recv_mono - sent_mono. Since then the
# unit's monotonic clock may have drifted by at most DRIFT_PPM. The bound:
#
#     error = GATEWAY_SYNC_ERROR_S + rtt / 2 + DRIFT_PPM * 1e-6 * (now_mono - recv_mono)
#     estimate = t + rtt / 2 + (now_mono - recv_mono)
#
# A gateway without sync gives no bound at all. A reading is usable while error stays within
# MAX_GATEWAY_ERROR_S; the verifier is then given `estimate + error` (the latest the true time
# can be, so `exp` is never passed early), and `iat`/`nbf` keep their `skew_s` of slack, which
# is larger than the error.

GATEWAY_SYNC_ERROR_S = 1.0  # a synchronised gateway (timesyncd/chrony) is within 1 s of UTC
DRIFT_PPM = 200.0  # an uncalibrated crystal: 100 ppm, budgeted twice (0.72 s an hour)
MAX_GATEWAY_ERROR_S = 30.0  # beyond this the reading is dropped (green needs a tight clock)


@dataclass(frozen=True)
class GatewayTime:
    """One signed gateway time, as the unit received it (monotonic seconds of the unit)."""

    t_ms: int  # the gateway's wall clock when it signed
    synced: bool  # the gateway's own clock is synchronised
    sent_mono: float  # when the unit sent what the ack answers
    recv_mono: float  # when the ack arrived

    def bound(self, now_mono: float) -> tuple[float, float] | None:
        """(estimate of true time now, error) in Unix seconds, or None: no usable bound."""
        rtt = self.recv_mono - self.sent_mono
        if not self.synced or rtt < 0:
            return None
        since = max(0.0, now_mono - self.recv_mono)
        error = GATEWAY_SYNC_ERROR_S + rtt / 2 + DRIFT_PPM * 1e-6 * since
        if error > MAX_GATEWAY_ERROR_S:
            return None
        return self.t_ms / 1000 + rtt / 2 + since, error
