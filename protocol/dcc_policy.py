"""A site's rules for EU Digital COVID Certificates, and the checks that apply them.

Checks that need no clock (disease, accepted type, complete course, test result) run first, so
a positive test is red even on a unit whose clock is unsure. Time checks follow the chot clock
rule (protocol/clock.py): SYNCED compares with `now`; BOUNDED can only prove "too late";
anything unprovable is `clock_untrusted` (amber), never green.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.clock import Clock, ClockState
from protocol.dcc_payload import DccCertificate
from protocol.dcc_trust import DCC_KINDS
from protocol.reasons import Reason

COVID19 = "840539006"  # SNOMED CT, value set disease-agent-targeted
NOT_DETECTED = "260415000"  # SNOMED CT, value set test-result
DAY_S = 86400


@dataclass(frozen=True)
class DccPolicy:
    """Which DCCs a site accepts. Defaults: all three types, complete course, tests <= 72 h."""

    kinds: frozenset[str] = field(default_factory=lambda: frozenset(DCC_KINDS))
    require_complete_course: bool = True
    vaccination_min_days: int = 0  # days after the last dose before it counts
    test_max_age_h: float = 72.0  # sample time to check time

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DccPolicy":
        """From a config file section or a signed config document; ValueError when malformed."""
        if not isinstance(values, Mapping):
            raise ValueError("the DCC policy is a map")
        unknown = set(values) - set(POLICY_KEYS)
        if unknown:
            raise ValueError(f"unknown DCC policy keys {sorted(unknown)}; known: {POLICY_KEYS}")
        kinds = values.get("kinds", list(DCC_KINDS))
        if not isinstance(kinds, list | tuple | frozenset | set) or not set(kinds) <= set(
            DCC_KINDS
        ):
            raise ValueError(f"kinds must be a subset of {DCC_KINDS}")
        complete = values.get("require_complete_course", True)
        min_days = values.get("vaccination_min_days", 0)
        max_age = values.get("test_max_age_h", 72.0)
        if not isinstance(complete, bool):
            raise ValueError("require_complete_course must be true or false")
        if isinstance(min_days, bool) or not isinstance(min_days, int) or min_days < 0:
            raise ValueError("vaccination_min_days must be a whole number >= 0")
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
            raise ValueError("test_max_age_h must be a number > 0")
        return cls(frozenset(kinds), complete, min_days, float(max_age))


POLICY_KEYS = ("kinds", "require_complete_course", "vaccination_min_days", "test_max_age_h")


def check_content(
    cert: DccCertificate, policy: DccPolicy, allowed_kinds: Collection[str] | None = None
) -> Reason:
    """Rules that need no clock. `allowed_kinds` is the unit's general kind policy, if any."""
    if cert.disease != COVID19:
        return Reason.WRONG_DISEASE
    if cert.kind not in policy.kinds or (
        allowed_kinds is not None and cert.kind not in allowed_kinds
    ):
        return Reason.KIND_NOT_ALLOWED
    complete = (cert.dose_number or 0) >= (cert.total_doses or 1)
    if cert.kind == "vaccination" and policy.require_complete_course and not complete:
        return Reason.VACCINATION_INCOMPLETE
    if cert.kind == "test" and cert.test_result != NOT_DETECTED:
        return Reason.TEST_POSITIVE
    return Reason.OK


def check_timing(cert: DccCertificate, policy: DccPolicy, clock: Clock, skew_s: int) -> Reason:
    """Rules on the certificate's own dates: vaccination wait, test age, recovery window."""
    window = _window(cert, policy)
    if window is None:
        return Reason.OK
    start, end, too_late = window  # valid for start <= now <= end
    if clock.state is ClockState.SYNCED:
        if clock.now > end:
            return too_late
        if clock.now + skew_s < start:
            return _too_early(cert)
        return Reason.OK
    bound = clock.lower_bound if clock.state is ClockState.BOUNDED else None
    if bound is not None and bound > end:
        return too_late
    return Reason.CLOCK_UNTRUSTED


_FAR_FUTURE = 2**62


def _window(cert: DccCertificate, policy: DccPolicy) -> tuple[int, int, Reason] | None:
    if cert.kind == "vaccination" and cert.vaccinated_at is not None:
        start = cert.vaccinated_at + policy.vaccination_min_days * DAY_S
        return start, _FAR_FUTURE, Reason.EXPIRED
    if cert.kind == "test" and cert.sampled_at is not None:
        end = cert.sampled_at + int(policy.test_max_age_h * 3600)
        return cert.sampled_at, end, Reason.TEST_TOO_OLD
    if cert.kind == "recovery" and cert.valid_from is not None and cert.valid_until is not None:
        return cert.valid_from, cert.valid_until + DAY_S - 1, Reason.RECOVERY_NOT_VALID
    return None


def _too_early(cert: DccCertificate) -> Reason:
    if cert.kind == "vaccination":
        return Reason.VACCINATION_TOO_RECENT
    if cert.kind == "recovery":
        return Reason.RECOVERY_NOT_VALID
    return Reason.NOT_YET_VALID  # a test sampled in the future
