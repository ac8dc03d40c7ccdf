"""Decide one scanned text: verify the pass, apply the site policy, debounce, catch duplicates.

Pure apart from the two clocks it is given, so tests drive it with fake time:

- ``monotonic`` (default ``time.monotonic``) measures the debounce and duplicate windows. It
  never jumps, so an NTP step or a Pi booting in 1970 cannot open or close a window.
- ``clock_fn`` returns the ``protocol.clock.Clock`` reading used for validity checks; its wall
  time only stamps the event.

A pass held in front of the camera is seen on many frames. The first frame decides; later
frames within ``debounce_s`` of the last sighting (sliding) repeat that decision: no new event,
and the lights are re-triggered at most every ``resignal_s`` (a new indicator command cuts the
running pattern off, so re-signalling every frame would never let a pattern finish). A pass
that would pass, presented again after that but within ``duplicate_window_s`` of its last
accepted scan, fails with ``duplicate_recent``: one pass, one person, one entry.

Accepted passes live in a ``RecentPasses`` table (device/recent_passes.py) rather than in the
debounce table: the app gives one kept on disk and fed by the gateway's snapshot of the site's
accepted passes, so the rule holds across a restart and across the lanes of a site. The
decider never waits for the network: it asks the table what it already holds.
"""

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from device.recent_passes import RecentPasses
from protocol.clock import Clock
from protocol.dcc import is_dcc, verify_dcc
from protocol.dcc_policy import DccPolicy
from protocol.dcc_trust import DccTrust
from protocol.pass_v1 import PassResult, verify_pass
from protocol.reasons import Reason, Verdict, verdict_for
from protocol.trust import RevocationList, TrustList

DEFAULT_MAX_RECENT = 50_000  # ~100 bytes each: a few MB at most, a day of a busy lane


@dataclass(frozen=True)
class Policy:
    """Site rules for this device (from the config file, or a signed config document)."""

    allowed_kinds: frozenset[str] | None = None  # None: whatever the trust list allows
    debounce_s: float = 5.0
    duplicate_window_s: float = 1800.0
    resignal_s: float = 2.0
    skew_s: int = 300
    max_recent: int = DEFAULT_MAX_RECENT
    dcc: DccPolicy = field(
        default_factory=DccPolicy
    )  # EU DCC rules: types, complete course, test age

    @classmethod
    def make(cls, allowed_kinds: Collection[str] | None = None, **kwargs) -> "Policy":
        kinds = frozenset(allowed_kinds) if allowed_kinds is not None else None
        return cls(allowed_kinds=kinds, **kwargs)


@dataclass(frozen=True)
class Decision:
    """What to show and whether to record it. ``result`` holds personal data: device only."""

    verdict: Verdict
    reason: Reason
    publish: bool  # a new decision: append one event to the outbox
    signal: bool  # drive the lights/buzzer now
    result: PassResult
    pass_ref: bytes | None  # SHA-256(cti)[0:16] when the pass decoded
    key: bytes  # debounce key: pass_ref, or a hash of the text when it did not decode
    clock: Clock
    ver_us: int = 0
    repeat: bool = False  # the same presentation seen again (within debounce)
    trust_version: int | None = None


# Reasons given before the issuer signature was checked: the claims are then unverified and
# must not be reported as facts (no subject pseudonym or kind in the event).
UNVERIFIED_REASONS = frozenset(
    {
        Reason.NOT_CHOT,
        Reason.BAD_BASE45,
        Reason.BAD_ZLIB,
        Reason.TOO_LARGE,
        Reason.BAD_CBOR,
        Reason.BAD_COSE,
        Reason.BAD_ALG,
        Reason.UNKNOWN_KID,
        Reason.BAD_SIGNATURE,
        Reason.BAD_CLAIMS,
        Reason.NO_TRUST_LIST,
    }
)


def signature_checked(decision: Decision) -> bool:
    """True when the pass's claims come from a verified issuer signature."""
    return decision.result.claims is not None and (decision.result.reason not in UNVERIFIED_REASONS)


@dataclass
class _Recent:
    decision: Decision
    last_seen: float  # monotonic
    last_signal: float  # monotonic


class Decider:
    """Holds the current trust list, revocations and policy plus a bounded recent-pass table."""

    def __init__(
        self,
        trust: TrustList | None,
        revocations: RevocationList | None,
        policy: Policy,
        clock_fn: Callable[[], Clock],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        dcc_trust: DccTrust | None = None,
        recent: RecentPasses | None = None,
    ) -> None:
        self.trust = trust
        self.dcc_trust = dcc_trust  # DSCs for EU DCCs (HC1:), a separate signed list
        self.revocations = revocations
        self.policy = policy
        self._clock_fn = clock_fn
        self._monotonic = monotonic
        self._recent: OrderedDict[bytes, _Recent] = OrderedDict()  # least recently seen first
        # passes accepted at this site (this unit's and the gateway's), by pass reference
        self.recent = recent if recent is not None else RecentPasses(monotonic=monotonic)
        self._size_recent()

    def set_trust(self, trust: TrustList | None) -> None:
        self.trust = trust

    def set_dcc_trust(self, dcc_trust: DccTrust | None) -> None:
        self.dcc_trust = dcc_trust

    def set_revocations(self, revocations: RevocationList | None) -> None:
        self.revocations = revocations

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self._size_recent()

    def _size_recent(self) -> None:
        self.recent.window_s = self.policy.duplicate_window_s
        self.recent.max_entries = self.policy.max_recent

    def __len__(self) -> int:
        """Accepted passes remembered (bounded by ``max_recent``, expired past the window)."""
        return len(self.recent)

    def decide(self, text: str) -> Decision:
        now = self._monotonic()
        clock = self._clock_fn()
        t0 = time.perf_counter_ns()
        p = self.policy
        trust_list: TrustList | DccTrust | None
        if is_dcc(text):  # an EU DCC: the same decision rules, its own trust list and rules
            trust_list = self.dcc_trust
            result: PassResult = verify_dcc(
                text,
                self.dcc_trust,
                clock,
                policy=p.dcc,
                revocations=self.revocations,
                allowed_kinds=p.allowed_kinds,
                skew_s=p.skew_s,
            )
        else:
            trust_list = self.trust
            result = verify_pass(
                text,
                self.trust,
                clock,
                revocations=self.revocations,
                allowed_kinds=p.allowed_kinds,
                skew_s=p.skew_s,
            )
        ver_us = (time.perf_counter_ns() - t0) // 1000
        ref = result.pass_ref
        key = ref if ref is not None else hashlib.sha256(text.encode("utf-8", "replace")).digest()
        self._expire(now)

        entry = self._recent.get(key)
        if entry is not None and now - entry.last_seen <= self.policy.debounce_s:
            entry.last_seen = now  # sliding window: still held in front of the camera
            self._recent.move_to_end(key)
            signal = now - entry.last_signal >= self.policy.resignal_s
            if signal:
                entry.last_signal = now
            return replace(entry.decision, publish=False, signal=signal, repeat=True)

        reason = result.reason
        accepted_at = self.recent.accepted_at(ref) if ref is not None else None
        if (
            result.verdict is Verdict.PASS
            and accepted_at is not None
            and now - accepted_at <= self.policy.duplicate_window_s
        ):
            reason = Reason.DUPLICATE_RECENT
        decision = Decision(
            verdict=verdict_for(reason),
            reason=reason,
            publish=True,
            signal=True,
            result=result,
            pass_ref=ref,
            key=key,
            clock=clock,
            ver_us=ver_us,
            trust_version=trust_list.version if trust_list else None,
        )
        if decision.verdict is Verdict.PASS and ref is not None:
            self.recent.note_accepted(ref, now)  # a duplicate does not restart the window
        self._recent[key] = _Recent(decision, now, now)
        self._recent.move_to_end(key)
        while len(self._recent) > self.policy.max_recent:
            self._recent.popitem(last=False)  # bounded memory: forget the oldest sighting
        return decision

    def _expire(self, now: float) -> None:
        """Drop sightings the debounce can no longer use (ordered by last sighting)."""
        keep = self.policy.debounce_s
        while self._recent:
            entry = next(iter(self._recent.values()))
            if now - entry.last_seen <= keep:
                break
            self._recent.popitem(last=False)
