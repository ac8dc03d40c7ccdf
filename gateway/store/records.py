"""The records that go into the store and come out of it.

In: `Accepted` (a verified event) and `Rejected` (an input refused at ingest), committed
together by `Store.commit_batch`, which answers with a `BatchResult` (an event the store
itself refuses goes to `Store.quarantine` instead). Out: `StoredEvent` (one
row of the live feed), `DeviceInfo` (one scanner's facts, for the status page and the CLI)
and `PendingEvent` (what the forwarder sends to the central store).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.verifier import VerifiedEvent
    from protocol.events import Event


@dataclass(frozen=True)
class Accepted:
    """A verified event ready to store (ingest builds it from protocol.events.Event)."""

    eid: bytes
    dev: str
    seq: int
    typ: str
    t_ms: int
    raw: bytes
    verdict: str | None = None
    reason: str | None = None
    lane: str | None = None
    kind: str | None = None
    clock: str | None = None
    ep: int = 0  # the unit's outbox epoch: seq counts within it (0: from before epochs)
    # the pass reference as verified (not a column: the signed bytes hold it); None when the
    # event has none or the record was read back from the store
    ref: bytes | None = None

    @classmethod
    def of(cls, event: "Event | VerifiedEvent", raw: bytes) -> "Accepted":
        """The record of a verified event (a unit's, or one this gateway signed) around its
        signed bytes; an event without an epoch is stored under epoch 0."""
        return cls(
            eid=event.eid,
            dev=event.dev,
            seq=event.seq,
            typ=event.typ,
            t_ms=event.t_ms,
            raw=raw,
            verdict=event.verdict,
            reason=event.reason,
            lane=event.lane,
            kind=event.kind,
            clock=event.clock,
            ep=event.ep or 0,
            ref=event.ref,
        )


@dataclass(frozen=True)
class Rejected:
    """An input that failed verification; kept (without payload) for the rejects view."""

    reason: str
    detail: str = ""
    topic_dev: str | None = None
    eid: bytes | None = None
    count: int = 1  # a flood of the same refusal from one device is one row, counted n times


@dataclass
class BatchResult:
    """What one committed batch did, and what to acknowledge to each device."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # device -> highest contiguous seq

    def add(self, other: "BatchResult") -> None:
        """Fold in a later commit of the same batch (split after a refused commit)."""
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.quarantined += other.quarantined
        for dev, seq in other.acks.items():
            self.acks[dev] = max(seq, self.acks.get(dev, 0))


@dataclass(frozen=True)
class StoredEvent:
    """One event as the store holds it (a scan's decision, a manual entry or a load summary):
    a line of the operators' live feed. Pseudonymous: no signed bytes, no personal data."""

    id: int  # increasing cursor: poll with recent_decisions(after_id=last id seen)
    eid: str
    dev: str
    typ: str
    seq: int
    lane: str | None
    verdict: str | None
    reason: str | None
    kind: str | None
    t_ms: int
    received_ms: int
    state: str  # pending | forwarded | rejected (by the central store)


@dataclass(frozen=True)
class DeviceInfo:
    """What the store knows of one scanner. What those facts mean for an operator (alerts)
    is the status page's business: gateway/web/alerts.py."""

    dev: str
    lane: str | None
    online: bool
    status: str | None
    last_seen_ms: int | None
    contiguous: int
    highest: int
    open_gaps: int  # ranges of seqs not received yet
    heartbeat: dict[str, Any] | None  # the last one that passed protocol/status.py
    heartbeat_ms: int | None  # when the gateway received the last heartbeat
    missing: int = 0  # seqs in the open ranges
    never_arrived: int = 0  # seqs given up after [store] gap_expiry_hours


@dataclass(frozen=True)
class PendingEvent:
    """An event the central store has not confirmed yet, as the forwarder sends it."""

    id: int
    eid: bytes
    raw: bytes
