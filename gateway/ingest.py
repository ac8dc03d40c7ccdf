"""Ingest: MQTT messages from the site's scanners -> verified, deduplicated, committed, acked.

One scan's path: the broker delivers the signed event (QoS 1) -> `Ingest.on_message` (paho's
network thread) only queues it -> the writer thread gathers a batch and hands it to the
verifier process (signature against the site registry, topic device = event device, event
site = our site; see verifier.py) -> the committer thread collects the verified batch and
commits it to the store in ONE transaction -> only then sends the MQTT PUBACKs (paho
`manual_ack=True`), so the broker redelivers anything that was not committed -> publishes the
end-to-end ack `{"seq": n}` (highest contiguous seq stored) to each device it heard from.
Batches keep their order through the pipeline: batch N+1 is verified while batch N is
committed and acked.

Bad input never stops the loop: every failure becomes a `Rejected` with a stable reason code,
counted in the store. Payloads are never logged (they are signed personal-ish data); only
device ids, event ids and reason codes are.
"""

import json
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.store import Accepted, BatchResult, Rejected, Store
from gateway.verifier import verify_event, verify_in_worker, worker_init, worker_ready
from protocol import topics
from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry

log = logging.getLogger(__name__)

# While a backlog drains, end-to-end acks go out at most this often (one per device); when the
# gateway is caught up they go out after every batch. Devices wait 15 s before resending.
ACK_COALESCE_S = 0.5


class RegistrySource:
    """The site registry, reloaded when its file changes (mtime poll) or on request (SIGHUP).

    A broken file keeps the last good registry: a half-written file must not reject a site.
    """

    def __init__(self, path: Path, site: str) -> None:
        self.path = Path(path)
        self.site = site
        self._mtime = 0.0
        self._reload_requested = False
        self.registry = Registry()
        self.reload()

    def reload(self) -> bool:
        try:
            mtime = os.stat(self.path).st_mtime
            registry = Registry.load(self.path).for_site(self.site)
        except (OSError, ValueError, KeyError) as exc:
            log.error("registry %s not (re)loaded, keeping the previous one: %s", self.path, exc)
            return False
        self.registry, self._mtime = registry, mtime
        log.info("registry loaded: %d signers for site %s", len(registry.signers), self.site)
        return True

    def request_reload(self) -> None:
        """Signal-safe: only sets a flag the writer thread acts on."""
        self._reload_requested = True

    def maybe_reload(self) -> None:
        try:
            changed = os.stat(self.path).st_mtime != self._mtime
        except OSError:
            changed = False
        if changed or self._reload_requested:
            self._reload_requested = False
            self.reload()


@dataclass(frozen=True)
class Inbound:
    """One message handed from paho's thread to the writer."""

    leaf: str  # event | status | heartbeat | ack
    dev: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection


_Verified = tuple[
    list[Accepted],
    list[Rejected],
    list[tuple[str, str]],
    list[tuple[str, dict]],
    list[tuple[str, int]],
]
# a batch on its way through the verifier: the registry it is checked against, the verifier
# process's future (None: verify in this process) and the pool that holds it
_Submitted = tuple[Registry, "Future | None", "ProcessPoolExecutor | None"]


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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_batch: Callable[[BatchResult], None] | None = None
        self.totals = {"stored": 0, "duplicates": 0, "rejected": 0, "batches": 0}
        self.registry_check_s = 5.0
        # verified batches waiting for the committer; small, so memory stays bounded and
        # the broker (receive maximum) does the buffering
        self.verify_process = verify_process
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # the writer starts pools, the committer drops them
        self._pool_registry: tuple[Registry | None, int] = (None, 0)  # last sent to the pool
        # batches handed to the verifier, in arrival order, for the committer to collect
        self._submitted: queue.Queue[tuple[list[Inbound], _Submitted] | None] = queue.Queue(3)
        self._pending_acks: dict[str, int] = {}  # device -> seq not yet published
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
            self.queue.put(
                Inbound(
                    parsed.leaf,
                    parsed.device,
                    bytes(msg.payload),
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
        if self.verify_process:
            self._start_pool()
        self._thread = threading.Thread(target=self._run, name="gateway-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        self._stop.set()
        self.queue.put(None)
        if self._thread:
            self._thread.join(timeout)
        self._stop_pool()

    def _start_pool(self) -> None:
        try:
            # spawn: a clean interpreter, nothing inherited from this threaded process
            pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(os.getpid(),),
            )
            pool.submit(worker_ready)  # start it now, not on the first event
        except Exception:
            log.exception("verifier process not started; verifying in the writer thread")
            return
        with self._pool_lock:
            self._pool = pool
            self._pool_registry = (None, self._pool_registry[1])  # a new worker knows none

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

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
                    self._submitted.put((items, self._submit(items)))
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
            items, submitted = work
            try:
                self._finish(items, self._collect(items, submitted))
            except Exception:
                # only reached when stopping (commit retries otherwise): nothing acked
                log.exception("ingest batch of %d messages not committed", len(items))
        self._flush_acks()

    def process(self, items: list[Inbound]) -> BatchResult:
        """Verify, commit (retrying on storage errors), then PUBACK and end-to-end ack."""
        return self._finish(items, self._collect(items, self._submit(items)))

    def _submit(self, items: list[Inbound]) -> "_Submitted":
        """Start verifying a batch's events in the verifier process (when there is one)."""
        registry = self.registry.registry
        return (registry, *self._submit_remote(items, registry))

    def _collect(self, items: list[Inbound], submitted: "_Submitted") -> "_Verified":
        """The batch sorted into accepted / rejected / statuses / heartbeats / peer acks."""
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        statuses: list[tuple[str, str]] = []
        heartbeats: list[tuple[str, dict]] = []
        peer_acks: list[tuple[str, int]] = []
        registry, future, pool = submitted
        site = self.site
        remote = self._remote_results(future, pool, sum(item.leaf == "event" for item in items))
        for item in items:
            try:
                if item.leaf == "event":
                    if remote is None:
                        accepted.append(verify_event(item.payload, item.dev, site, registry))
                        continue
                    r = next(remote)
                    if len(r) == 2:
                        raise ProtocolError(Reason(r[0]), r[1])
                    eid, dev, seq, typ, t_ms, verdict, reason, lane, kind, clock = r
                    accepted.append(
                        Accepted(
                            eid,
                            dev,
                            seq,
                            typ,
                            t_ms,
                            item.payload,
                            verdict,
                            reason,
                            lane,
                            kind,
                            clock,
                        )
                    )
                elif item.leaf == "status":
                    statuses.append((item.dev, str(_json(item.payload)["state"])[:16]))
                elif item.leaf == "heartbeat":
                    heartbeats.append((item.dev, _json(item.payload)))
                elif item.leaf == "ack" and self.peer_acks:
                    peer_acks.append((item.dev, int(_json(item.payload)["seq"])))
            except ProtocolError as exc:
                rejected.append(Rejected(exc.reason.value, exc.detail, item.dev))
                log.info("reject device=%s reason=%s", item.dev, exc.reason.value)
            except Exception as exc:  # malformed JSON status/heartbeat or anything unexpected
                rejected.append(Rejected(f"bad_{item.leaf}", type(exc).__name__, item.dev))
        return accepted, rejected, statuses, heartbeats, peer_acks

    def _submit_remote(
        self, items: list[Inbound], registry: Registry
    ) -> "tuple[Future | None, ProcessPoolExecutor | None]":
        """The batch's events sent to the verifier process, and that process's pool; no future
        means verify here (no pool, or it could not take the batch: then it is restarted for
        the next one)."""
        if self._pool is None:
            if not self.verify_process or self._thread is None or self._stop.is_set():
                return None, None  # not started (a direct `process()` call), or stopping
            self._start_pool()
        pool = self._pool
        events = [(item.dev, item.payload) for item in items if item.leaf == "event"]
        if pool is None or not events:
            return None, None
        send: Registry | None = None
        if self._pool_registry[0] is not registry:
            send, self._pool_registry = registry, (registry, self._pool_registry[1] + 1)
        try:
            future = pool.submit(verify_in_worker, self.site, self._pool_registry[1], send, events)
        except Exception:
            log.exception("verifier process refused a batch; verifying it in this process")
            self._drop_pool(pool)
            return None, None
        return future, pool

    def _remote_results(
        self, future: "Future | None", pool: "ProcessPoolExecutor | None", n_events: int
    ) -> "Iterator[tuple] | None":
        """The verifier's answers in order, or None: verify here instead (never accept an
        event the verifier did not answer for)."""
        if future is None:
            return None
        try:
            results = future.result()
        except Exception:
            log.exception("verifier process failed; verifying this batch in the gateway")
            self._drop_pool(pool)
            return None
        if len(results) != n_events:
            log.error("verifier process returned %d results for %d events", len(results), n_events)
            return None
        return iter(results)

    def _drop_pool(self, pool: "ProcessPoolExecutor | None") -> None:
        """Forget a broken verifier process (only that one: the batches it held fail too, and
        must not take down its successor); the writer starts a new one for the next batch."""
        with self._pool_lock:
            if pool is None or pool is not self._pool:
                return
            self._pool = None
            self._pool_registry = (None, self._pool_registry[1])
        pool.shutdown(wait=False, cancel_futures=True)

    def _finish(self, items: list[Inbound], verified: "_Verified") -> BatchResult:
        accepted, rejected, statuses, heartbeats, peer_acks = verified
        result = self._commit(accepted, rejected, statuses, heartbeats)
        for dev, seq in peer_acks:
            try:
                self.store.note_peer_ack(dev, seq)
            except Exception:
                log.exception("peer ack device=%s not recorded", dev)
        self._acknowledge(items, result)
        self.totals["stored"] += result.stored
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += result.rejected
        self.totals["batches"] += 1
        if self.on_batch:
            self.on_batch(result)
        return result

    def _commit(self, accepted, rejected, statuses, heartbeats) -> BatchResult:
        delay = 0.1
        while True:
            try:
                return self.store.commit_batch(
                    accepted, rejected, statuses=statuses, heartbeats=heartbeats
                )
            except Exception:
                # Nothing is acked, so nothing is lost: retry until the disk recovers or we
                # stop (then the broker redelivers after our restart).
                log.exception("store commit failed for %d events; retrying", len(accepted))
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 5.0)

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
        for dev, seq in pending.items():
            client.publish(topics.ack_topic(self.site, dev), json.dumps({"seq": seq}), qos=1)


def _json(payload: bytes) -> dict:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data
