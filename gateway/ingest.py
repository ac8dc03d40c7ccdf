"""Ingest: MQTT messages from the site's scanners -> verified, deduplicated, committed, acked.

One scan's path: the broker delivers the signed event (QoS 1) -> `Ingest.on_message` (paho's
network thread) only queues it -> the writer thread verifies a batch (signature against the
site registry, topic device = event device, event site = our site), commits the batch to the
store in ONE transaction -> only then sends the MQTT PUBACKs (paho `manual_ack=True`), so the
broker redelivers anything that was not committed -> publishes the end-to-end ack
`{"seq": n}` (highest contiguous seq stored) to each device it heard from.

Bad input never stops the loop: every failure becomes a `Rejected` with a stable reason code,
counted in the store. Payloads are never logged (they are signed personal-ish data); only
device ids, event ids and reason codes are.
"""

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
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


@dataclass(frozen=True)
class Inbound:
    """One message handed from paho's thread to the writer."""

    leaf: str  # event | status | heartbeat | ack
    dev: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection


class Ingest:
    """Queue + writer thread. `client` is set by the app once the MQTT client exists."""

    def __init__(self, store: Store, site: str, registry: RegistrySource, *,
                 batch_max: int = 500, batch_ms: int = 20, peer_acks: bool = False) -> None:  # fmt: skip
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
        self._thread = threading.Thread(target=self._run, name="gateway-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        self._stop.set()
        self.queue.put(None)
        if self._thread:
            self._thread.join(timeout)

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
        next_registry_check = 0.0
        while not (self._stop.is_set() and self.queue.empty()):
            if time.monotonic() >= next_registry_check:
                self.registry.maybe_reload()
                next_registry_check = time.monotonic() + self.registry_check_s
            items = self._drain()
            if items:
                self.process(items)

    def process(self, items: list[Inbound]) -> BatchResult:
        """Verify, commit (retrying on storage errors), then PUBACK and end-to-end ack."""
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        statuses: list[tuple[str, str]] = []
        heartbeats: list[tuple[str, dict]] = []
        peer_acks: list[tuple[str, int]] = []
        registry = self.registry.registry
        for item in items:
            try:
                if item.leaf == "event":
                    accepted.append(verify_event(item.payload, item.dev, self.site, registry))
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
            client.publish(topics.ack_topic(self.site, dev), json.dumps({"seq": seq}), qos=1)


def _json(payload: bytes) -> dict:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data
