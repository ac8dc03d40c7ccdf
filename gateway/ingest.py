"""Ingest: MQTT messages from the site's scanners -> verified, deduplicated, committed, acked.

One scan's path: the broker delivers the signed event (QoS 1) -> `Ingest.on_message` (paho's
network thread) only queues it -> the writer thread verifies a batch (signature against the
site registry, topic device = event device, event site = our site; the signature and CBOR work
runs in a verifier process, see below) -> the committer thread commits the batch to the store
in ONE transaction -> only then sends the MQTT PUBACKs (paho `manual_ack=True`), so the
broker redelivers anything that was not committed -> publishes the end-to-end ack
`{"seq": n}` (highest contiguous seq stored) to each device it heard from. Batches go through
the two stages in order, so batch N+1 is verified while batch N is committed and acked.

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
from protocol import topics
from protocol.events import open_event
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


def verify_event(payload: bytes, topic_dev: str, site: str, registry: Registry) -> Accepted:
    """Check one signed event from a device topic; raises ProtocolError with the reason."""

    def key_for(dev: str) -> bytes | None:
        signer = registry.signers.get(dev)
        if signer is None or signer.site != site or signer.role != "device":
            return None
        if signer.revoked:
            raise ProtocolError(Reason.DEVICE_REVOKED, f"device {dev} is revoked")
        return signer.public_key

    verified = open_event(payload, key_for)
    ev = verified.event
    if ev.dev != topic_dev or ev.site != site:
        raise ProtocolError(Reason.TOPIC_MISMATCH, f"event of {ev.dev}@{ev.site} on {topic_dev}")
    signer = registry.signers[ev.dev]
    return Accepted(eid=ev.eid, dev=ev.dev, seq=ev.seq, typ=ev.typ, t_ms=ev.t_ms,
                    raw=verified.raw, verdict=ev.verdict, reason=ev.reason,
                    lane=ev.lane or signer.lane, kind=ev.kind, clock=ev.clock)  # fmt: skip


# --- the verifier process -----------------------------------------------------------------
# Signature checks and CBOR parsing are about half of the gateway's CPU per event. Done in a
# separate process they run in parallel with paho's network thread and the SQLite commit
# instead of competing for one GIL. The worker gets the registry snapshot the writer thread
# chose (sent again only when it changes, or to a new worker) and returns plain tuples; the
# writer rebuilds the Accepted records around the payload bytes it already holds.

_worker_registry: list = [-1, None]  # [version, Registry] cached in the verifier process


def _verify_in_worker(site: str, version: int, registry: Registry | None,
                      events: list[tuple[str, bytes]]) -> list[tuple]:  # fmt: skip
    """In the verifier process: per event, Accepted fields minus raw, or (reason, detail)."""
    if registry is not None:
        _worker_registry[:] = [version, registry]
    elif _worker_registry[0] != version:
        raise RuntimeError("verifier process has no registry of this version")
    registry = _worker_registry[1]
    out: list[tuple] = []
    for dev, payload in events:
        try:
            a = verify_event(payload, dev, site, registry)
            out.append((a.eid, a.dev, a.seq, a.typ, a.t_ms, a.verdict, a.reason, a.lane, a.kind,
                        a.clock))  # fmt: skip
        except ProtocolError as exc:
            out.append((exc.reason.value, exc.detail))
        except Exception as exc:  # unexpected: the event is rejected, never accepted
            out.append(("bad_event", type(exc).__name__))
    return out


def _worker_ready() -> bool:
    return True


def _worker_init(parent_pid: int) -> None:
    """The verifier must not outlive the gateway (kill -9 included): it would hold a
    worker's memory forever, and a restarted gateway starts its own."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@dataclass(frozen=True)
class Inbound:
    """One message handed from paho's thread to the writer."""

    leaf: str  # event | status | heartbeat | ack
    dev: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection


_Verified = tuple[list[Accepted], list[Rejected], list[tuple[str, str]],
                  list[tuple[str, dict]], list[tuple[str, int]]]  # fmt: skip


class Ingest:
    """Queue + writer thread. `client` is set by the app once the MQTT client exists."""

    def __init__(self, store: Store, site: str, registry: RegistrySource, *,
                 batch_max: int = 500, batch_ms: int = 20, peer_acks: bool = False,
                 verify_process: bool = True) -> None:  # fmt: skip
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
        self._pool_registry: tuple[Registry | None, int] = (None, 0)  # last sent to the pool
        self._verified: queue.Queue[tuple[list[Inbound], _Verified] | None] = queue.Queue(2)
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
            self.queue.put(Inbound(parsed.leaf, parsed.device, bytes(msg.payload), msg.mid,
                                   msg.qos, self.generation))  # fmt: skip
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
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(os.getpid(),))  # fmt: skip
            self._pool_registry = (None, self._pool_registry[1])  # a new worker knows none
            self._pool.submit(_worker_ready)  # start it now, not on the first event
        except Exception:
            log.exception("verifier process not started; verifying in the writer thread")
            self._pool = None

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
        """Two stages so verifying batch N+1 overlaps committing (fsync) and acking batch N:
        this thread verifies, the committer thread commits then acks, in order."""
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
                    self._verified.put((items, self._verify(items)))
        finally:
            self._verified.put(None)
            committer.join()

    def _commit_loop(self) -> None:
        while True:
            try:
                work = self._verified.get(timeout=ACK_COALESCE_S)
            except queue.Empty:
                self._flush_acks()  # idle: nothing waits behind these acks any more
                continue
            if work is None:
                break
            try:
                self._finish(*work)
            except Exception:
                # only reached when stopping (commit retries otherwise): nothing acked
                log.exception("ingest batch of %d messages not committed", len(work[0]))
        self._flush_acks()

    def process(self, items: list[Inbound]) -> BatchResult:
        """Verify, commit (retrying on storage errors), then PUBACK and end-to-end ack."""
        return self._finish(items, self._verify(items))

    def _verify(self, items: list[Inbound]) -> "_Verified":
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        statuses: list[tuple[str, str]] = []
        heartbeats: list[tuple[str, dict]] = []
        peer_acks: list[tuple[str, int]] = []
        registry = self.registry.registry
        site = self.site
        remote = self._verify_remote(items, registry)
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
                    accepted.append(Accepted(eid, dev, seq, typ, t_ms, item.payload, verdict,
                                             reason, lane, kind, clock))  # fmt: skip
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

    def _verify_remote(self, items: list[Inbound], registry: Registry) -> "Iterator[tuple] | None":
        """The batch's events verified in the verifier process, in order; None means verify
        here (no pool, or it failed: then it is restarted for the next batch)."""
        if self._pool is None:
            if not self.verify_process or self._thread is None or self._stop.is_set():
                return None  # not started (a direct `process()` call), or stopping
            self._start_pool()
            if self._pool is None:
                return None
        events = [(item.dev, item.payload) for item in items if item.leaf == "event"]
        if not events:
            return None
        send: Registry | None = None
        if self._pool_registry[0] is not registry:
            send, self._pool_registry = registry, (registry, self._pool_registry[1] + 1)
        try:
            future: Future = self._pool.submit(_verify_in_worker, self.site,
                                               self._pool_registry[1], send, events)  # fmt: skip
            results = future.result()
        except Exception:
            log.exception("verifier process failed; verifying this batch in the writer thread")
            pool, self._pool = self._pool, None
            self._pool_registry = (None, self._pool_registry[1])
            pool.shutdown(wait=False, cancel_futures=True)
            return None
        if len(results) != len(events):
            log.error("verifier process returned %d results for %d events", len(results),
                      len(events))  # fmt: skip
            return None
        return iter(results)

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
                return self.store.commit_batch(accepted, rejected, statuses=statuses,
                                               heartbeats=heartbeats)  # fmt: skip
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
        backlog = not (self.queue.empty() and self._verified.empty())
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
