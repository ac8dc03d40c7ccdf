"""Committing a verified batch so that nothing in it can wedge ingest.

The store commits a whole batch in one transaction. Two kinds of failure are told apart:
the disk (sqlite3.OperationalError: full, I/O, locked) is retried until it recovers, with
nothing acked, so nothing is lost; any other refusal is the data's, so the batch is split in
halves until the one event the store refuses is alone, and that event is quarantined (kept
with its reason, then acked like any other), so it is never redelivered forever. Split out of
ingest.py, which keeps the pipeline (queue, verifier, acks).
"""

import logging
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field

from gateway.store import Accepted, BatchResult, Rejected, Store
from protocol import ack as ack_contract

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0  # longest wait between two commit attempts while the disk fails


@dataclass
class VerifiedBatch:
    """A batch sorted for the commit: verified events, refused inputs, and the devices'
    statuses, heartbeats and (from the paired gateway) acks, as (device, value) pairs."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    heartbeats: list[tuple[str, dict]] = field(default_factory=list)
    peer_acks: list[ack_contract.Ack] = field(default_factory=list)  # signed, verified
    counts: Counter[str] = field(default_factory=Counter)  # ingest's own: drops, splits

    def halves(self) -> tuple["VerifiedBatch", "VerifiedBatch"]:
        """For a refused commit: the statuses, heartbeats and refusals apart from the events
        first, then each half of what is left, so splitting ends on one item."""
        if self.accepted and self.size() > len(self.accepted):
            side = VerifiedBatch([], self.rejected, self.statuses, self.heartbeats, [], self.counts)
            return side, VerifiedBatch(self.accepted)
        if self.accepted:
            mid = len(self.accepted) // 2
            return (
                VerifiedBatch(self.accepted[:mid], counts=self.counts),
                VerifiedBatch(self.accepted[mid:]),
            )
        side_items = (
            [("rejected", x) for x in self.rejected]
            + [("statuses", x) for x in self.statuses]
            + [("heartbeats", x) for x in self.heartbeats]
        )
        mid = len(side_items) // 2
        first, second = VerifiedBatch(counts=self.counts), VerifiedBatch()
        for i, (kind, item) in enumerate(side_items):
            getattr(first if i < mid else second, kind).append(item)
        return first, second

    def size(self) -> int:
        return len(self.accepted) + len(self.rejected) + len(self.statuses) + len(self.heartbeats)


class CommitGuard:
    """Commits verified batches to `store`; `stop` ends the disk retry (then it raises)."""

    def __init__(self, store: Store, stop: threading.Event) -> None:
        self.store = store
        self.stop = stop

    def commit(self, batch: VerifiedBatch) -> BatchResult:
        """Commit the batch. The disk failing is retried until it recovers or we stop, with
        nothing acked, so nothing is lost. Any other refusal is the data's: the batch is
        split until the one event the store refuses is alone, and that one is quarantined."""
        delay = 0.1
        while True:
            try:
                return self._commit_or_split(batch)
            except sqlite3.OperationalError:
                # Nothing is acked, so nothing is lost: retry until the disk recovers or we
                # stop (then the broker redelivers after our restart).
                log.exception("store commit failed for %d events; retrying", len(batch.accepted))
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, RETRY_MAX_S)

    def _commit_or_split(self, batch: VerifiedBatch) -> BatchResult:
        try:
            return self.store.commit_batch(
                batch.accepted,
                batch.rejected,
                statuses=batch.statuses,
                heartbeats=batch.heartbeats,
                counts=batch.counts,
            )
        except sqlite3.OperationalError:
            raise
        except Exception as exc:
            if len(batch.accepted) == 1 and batch.size() == 1:
                return self._quarantine(batch.accepted[0], exc)
            if batch.size() <= 1:  # a lone status, heartbeat or refusal: checked, yet refused
                log.error("ingest item dropped: the store refused it (%s)", type(exc).__name__)
                counts = batch.counts + Counter({"dropped.store_refused": 1})
                return self.store.commit_batch([], counts=counts)
            log.warning(
                "store refused a batch of %d events (%s); splitting it", len(batch.accepted), exc
            )
            result = BatchResult()
            for half in batch.halves():
                if half.size():
                    result.add(self._commit_or_split(half))
            return result

    def _quarantine(self, event: Accepted, exc: Exception) -> BatchResult:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        log.error(
            "event quarantined device=%s eid=%s seq=%s reason=%s",
            event.dev,
            event.eid.hex(),
            event.seq,
            reason,
        )
        return self.store.quarantine(event, reason)
