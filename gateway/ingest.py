"""Ingest: MQTT messages from the site's scanners -> verified, deduplicated, committed, acked.

One scan's path: the broker delivers the signed event (QoS 1) -> `Ingest.on_message` (paho's
network thread) only queues it -> the writer thread gathers a batch and hands it to the
verifier process (signature against the site registry, topic device = event device, event
site = our site; see verifier.py) -> the committer thread collects the verified batch, sorted
into events, statuses, heartbeats and peer acks (batch_sort.py), and commits it to the store
in ONE transaction -> only then sends the MQTT PUBACKs (paho `manual_ack=True`), so the
broker redelivers anything that was not committed -> publishes the end-to-end ack, signed by
the gateway key and naming exactly the seqs committed per device and outbox epoch
(gateway/acks.py, protocol/ack.py).
Batches keep their order through the pipeline: batch N+1 is verified while batch N is
committed and acked.

Bad input never stops the loop: every failure becomes a `Rejected` with a stable reason code,
counted in the store. Statuses, heartbeats and peer acks pass protocol/status.py's contract
(types, bounds, size) or are refused (`bad_heartbeat`, ...), never stored. A batch the store
refuses to commit for a reason other than the disk is split in halves until the one event it
refuses is found; that event is set aside in the store's quarantine with the reason, acked,
and everything else is committed (commit_guard.py). The queue from paho's thread is bounded for
QoS 0 messages (heartbeats, which bypass MQTT flow control): past `queue_max` they are dropped
and counted (`dropped.<leaf>`); QoS 1 messages (events) are never dropped, the broker's
receive maximum bounds them. Payloads are never logged (they are signed personal-ish data);
only device ids, event ids and reason codes are.
"""

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from gateway.acks import AckSigner
from gateway.batch_sort import BatchSorter, Inbound
from gateway.commit_guard import CommitGuard, VerifiedBatch
from gateway.recent_passes import RecentPassesPublisher
from gateway.registry_source import RegistrySource
from gateway.store import BatchResult, Store
from gateway.verifier import PendingVerification, VerifierPool, VerifierResult
from protocol import ack as ack_contract
from protocol import status, topics
from protocol.events import MAX_EVENT_BYTES
from protocol.registry import Registry

log = logging.getLogger(__name__)

# re-exported: the pipeline's message record and registry, as tests and the app name them
__all__ = ["ACK_COALESCE_S", "PAYLOAD_LIMITS", "Inbound", "Ingest", "RegistrySource"]

# While a backlog drains, end-to-end acks go out at most this often (one per device); when the
# gateway is caught up they go out after every batch. Devices wait 15 s before resending, and
# each ack is an Ed25519 signature: a 500-unit storm signed ~1,000 a second at 0.5 s.
ACK_COALESCE_S = 2.0

# Largest payload kept per topic leaf: anything longer is cut to one byte over, which the
# contract then refuses as too long, so a flood of huge payloads holds no memory here.
PAYLOAD_LIMITS = {
    "event": MAX_EVENT_BYTES,
    "status": status.MAX_STATUS_BYTES,
    "heartbeat": status.MAX_HEARTBEAT_BYTES,
    "ack": ack_contract.MAX_ACK_BYTES,  # a paired gateway's signed ack (protocol/ack.py)
}


@dataclass(frozen=True)
class SubmittedBatch:
    """A batch on its way through the verifier: its messages, the registry snapshot it is
    checked against, and the verifier process's pending answer (None: verify here)."""

    items: list[Inbound]
    registry: Registry
    pending: PendingVerification | None


class Ingest:
    """Queue + writer thread. `client` is set by the app once the MQTT client exists."""

    def __init__(
        self,
        store: Store,
        site: str,
        registry: RegistrySource,
        *,
        batch_max: int = 500,
        batch_ms: int = 20,
        peer_acks: bool = False,
        verify_process: bool = True,
        queue_max: int = 10_000,
    ) -> None:
        self.store = store
        self.site = site
        self.registry = registry
        self.batch_max = batch_max
        self.batch_s = batch_ms / 1000
        self.peer_acks = peer_acks
        self.client: mqtt.Client | None = None
        self.generation = 0
        self.queue: queue.SimpleQueue[Inbound | None] = queue.SimpleQueue()
        self.queue_max = queue_max  # QoS 0 messages are dropped past this many queued
        self._dropped: Counter[str] = Counter()  # by leaf, until the next commit counts them
        self._dropped_lock = threading.Lock()
        self._stop = threading.Event()
        # splits a refused batch and quarantines the one refused event (commit_guard.py)
        self.commit_guard = CommitGuard(store, self._stop)
        self._thread: threading.Thread | None = None
        self.on_batch: Callable[[BatchResult], None] | None = None
        self.totals = {
            "stored": 0,
            "duplicates": 0,
            "rejected": 0,
            "quarantined": 0,
            "dropped": 0,
            "batches": 0,
        }
        self.registry_check_s = 5.0
        self.verifier = VerifierPool(site) if verify_process else None
        # batches handed to the verifier, in arrival order, for the committer to collect;
        # small, so memory stays bounded and the broker (receive maximum) does the buffering
        self._submitted: queue.Queue[SubmittedBatch | None] = queue.Queue(3)
        self._pending_acks: dict[str, int] = {}  # device -> seq not yet published
        # signed, epoch-bound acks (gateway/acks.py), set by the app; None: no acks at all
        self.acks: AckSigner | None = None
        # the site's recently accepted passes, shared with its units (gateway/recent_passes.py)
        self.recent: RecentPassesPublisher | None = None
        self._acks_flushed_at = 0.0

    def subscriptions(self, shared_group: str | None) -> list[tuple[str, int]]:
        """(filter, qos): events shared between a pair; status/heartbeat/acks to each."""
        event_filter = topics.site_device_filter(self.site, "event")
        if shared_group:
            event_filter = topics.shared(event_filter, shared_group)
        subs = [
            (event_filter, 1),
            (topics.site_device_filter(self.site, "status"), 1),
            (topics.site_device_filter(self.site, "heartbeat"), 0),
        ]
        if self.peer_acks:
            subs.append((topics.site_device_filter(self.site, "ack"), 1))
        return subs

    # --- paho network thread ---------------------------------------------------------------

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            parsed = topics.parse_device_topic(msg.topic)
            if parsed is None or parsed.site != self.site:
                client.ack(msg.mid, msg.qos)  # not ours to store; do not let it redeliver
                return
            if msg.qos == 0 and self.queue.qsize() >= self.queue_max:
                # QoS 0 has no flow control: a heartbeat flood would grow this queue without
                # bound. Drop it (a heartbeat is replaced by the next one); QoS 1 events are
                # bounded by our receive maximum and never dropped.
                with self._dropped_lock:
                    self._dropped[parsed.leaf] += 1
                return
            limit = PAYLOAD_LIMITS.get(parsed.leaf, status.MAX_HEARTBEAT_BYTES)
            self.queue.put(
                Inbound(
                    parsed.leaf,
                    parsed.device,
                    bytes(msg.payload[: limit + 1]),
                    msg.mid,
                    msg.qos,
                    self.generation,
                )
            )
        except Exception:
            log.exception("could not queue message on %s", msg.topic)

    def new_connection(self) -> None:
        """Called from on_connect: PUBACKs for messages of an older connection are dropped
        (the broker redelivers those messages on the new one)."""
        self.generation += 1

    # --- writer thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self.verifier:
            self.verifier.start()
        self._thread = threading.Thread(target=self._run, name="gateway-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        self._stop.set()
        self.queue.put(None)
        if self._thread:
            self._thread.join(timeout)
        if self.verifier:
            self.verifier.stop()

    def _drain(self) -> list[Inbound]:
        items: list[Inbound] = []
        try:
            first = self.queue.get(timeout=0.5)
        except queue.Empty:
            return items
        if first is None:
            return items
        items.append(first)
        deadline = time.monotonic() + self.batch_s
        while len(items) < self.batch_max:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                break
            items.append(item)
        return items

    def _run(self) -> None:
        """A pipeline, in order: this thread batches messages and hands each batch to the
        verifier process without waiting for it; the committer thread collects the verified
        batches, commits, then acks. So the verifier works on batch N+1 (and N+2) while batch N
        is committed (fsync) and acked, and never waits for a batch to be gathered."""
        committer = threading.Thread(target=self._commit_loop, name="gateway-commit", daemon=True)
        committer.start()
        next_registry_check = 0.0
        try:
            while not (self._stop.is_set() and self.queue.empty()):
                if time.monotonic() >= next_registry_check:
                    self.registry.maybe_reload()
                    next_registry_check = time.monotonic() + self.registry_check_s
                items = self._drain()
                if items:
                    self._submitted.put(self._submit(items))
        finally:
            self._submitted.put(None)
            committer.join()

    def _commit_loop(self) -> None:
        while True:
            try:
                work = self._submitted.get(timeout=ACK_COALESCE_S)
            except queue.Empty:
                self._flush_acks()  # idle: nothing waits behind these acks any more
                continue
            if work is None:
                break
            try:
                self._finish(work.items, self._sort(work))
            except Exception:
                # only reached when stopping (commit retries otherwise): nothing acked
                log.exception("ingest batch of %d messages not committed", len(work.items))
        self._flush_acks()

    def process(self, items: list[Inbound]) -> BatchResult:
        """Verify, commit (retrying on storage errors), then PUBACK and end-to-end ack."""
        return self._finish(items, self._sort(self._submit(items)))

    def _submit(self, items: list[Inbound]) -> SubmittedBatch:
        """Start verifying a batch's events in the verifier process (when there is one)."""
        registry = self.registry.registry
        return SubmittedBatch(items, registry, self._send_to_verifier(items, registry))

    def _send_to_verifier(
        self, items: list[Inbound], registry: Registry
    ) -> PendingVerification | None:
        """None means verify here: no verifier process (configured off, not started by a
        direct `process()` call, stopping, or it could not be (re)started), or no events."""
        verifier = self.verifier
        if verifier is None:
            return None
        if not verifier.running:
            if self._thread is None or self._stop.is_set():
                return None
            verifier.start()  # the last one broke: a new one for this batch
        events = [(item.dev, item.payload) for item in items if item.leaf == "event"]
        return verifier.submit(registry, events) if events else None

    def _answers(self, batch: SubmittedBatch) -> list[VerifierResult] | None:
        """The verifier process's answers for the batch's events, or None: verify here."""
        if batch.pending is None or self.verifier is None:
            return None
        n_events = sum(item.leaf == "event" for item in batch.items)
        return self.verifier.results(batch.pending, n_events)

    def _sort(self, batch: SubmittedBatch) -> VerifiedBatch:
        """The batch sorted into accepted / rejected / statuses / heartbeats / peer acks
        (batch_sort.py)."""
        counts = self._take_dropped()
        own = self.acks.gateway_id if self.acks is not None else None
        sorter = BatchSorter(self.site, self.peer_acks, own)
        return sorter.sort(batch.items, batch.registry, self._answers(batch), counts)

    def _take_dropped(self) -> Counter[str]:
        """QoS 0 messages dropped on a full queue since the last batch, as store counters."""
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, Counter()
        if dropped:
            self.totals["dropped"] += sum(dropped.values())
            log.warning("ingest queue full: dropped %s", dict(dropped))
        return Counter({f"dropped.{leaf}": n for leaf, n in dropped.items()})

    def _finish(self, items: list[Inbound], verified: VerifiedBatch) -> BatchResult:
        result = self.commit_guard.commit(verified)
        for peer in verified.peer_acks:
            named = [(r.lo, r.hi) for r in peer.ranges]
            if peer.upto:
                named.append((1, peer.upto))
            try:
                self.store.note_peer_ack(peer.dev, peer.ep, named)
            except Exception:
                log.exception("peer ack device=%s ep=%d not recorded", peer.dev, peer.ep)
        if self.acks is not None:  # signed acks name exactly what this batch committed
            self.acks.note_committed(verified.accepted)
            for dev, beat in verified.heartbeats:
                self.acks.note_heartbeat(dev, beat.get("ep"), beat.get("hb"))
        if self.recent is not None:  # one pass, one entry across the site's lanes
            self.recent.note_committed(verified.accepted)
        self._acknowledge(items, result)
        self.totals["stored"] += result.stored
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += result.rejected
        self.totals["quarantined"] += result.quarantined
        self.totals["batches"] += 1
        if self.on_batch:
            self.on_batch(result)
        return result

    def _acknowledge(self, items: list[Inbound], result: BatchResult) -> None:
        client = self.client
        if client is None:
            return
        for item in items:
            if item.qos and item.generation == self.generation:
                client.ack(item.mid, item.qos)
        for dev, seq in result.acks.items():
            self._pending_acks[dev] = max(seq, self._pending_acks.get(dev, 0))
        backlog = not (self.queue.empty() and self._submitted.empty())
        if not backlog or time.monotonic() - self._acks_flushed_at >= ACK_COALESCE_S:
            self._flush_acks()

    def _flush_acks(self) -> None:
        """Publish the end-to-end acks gathered since the last flush, one per device.

        An ack carries the highest contiguous seq, so the newest replaces the older ones:
        while a backlog drains (a reconnect storm), batches come back to back and would
        otherwise send one ack per device per batch, as many messages as events."""
        client, pending = self.client, self._pending_acks
        self._pending_acks = {}
        self._acks_flushed_at = time.monotonic()
        if client is None:
            return
        if self.acks is not None:  # the v1 JSON ack is gone: units refuse unsigned acks
            self.acks.flush(lambda topic, payload: client.publish(topic, payload, qos=1))
        elif pending:
            log.error("no ack signer: %d devices left unacknowledged", len(pending))
