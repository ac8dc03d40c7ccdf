"""Which gateway acks a unit believes, and what a believed ack says about its clock.

A row leaves the outbox only on the gateway's end-to-end ack: a COSE_Sign1 by a pinned gateway
key naming this device, the outbox's epoch and seqs this process has handed to the broker
(protocol/ack.py). An ack that is unsigned (the v1 JSON too), signed by another key, for
another device or epoch, or for a seq not yet sent is refused with ``AckError``; a unit pins
at least one gateway key (its config refuses to load without).

A signed ack from a synchronised gateway also bounds the unit's clock: every heartbeat carries
a random nonce ``hb`` the gateway echoes, and events created by this process have their send
time recorded, so ``gateway_time`` can say when the question left (protocol/clock.py).

Thread-safe: the pump notes what it sends, paho's network thread checks acks.
"""

import logging
import secrets
import threading
import time
from collections.abc import Mapping

from protocol.ack import Ack, AckError, open_ack
from protocol.clock import GatewayTime

log = logging.getLogger(__name__)

HEARTBEATS_KEPT = 8  # an ack answers one of the unit's last few heartbeats, or none


class AckChecker:
    """Verifies acks for one device and outbox epoch against the pinned gateway keys."""

    def __init__(
        self,
        device_id: str,
        epoch: int,
        gateway_keys: Mapping[str, bytes],
        *,
        fresh_from: int,
        send_times_kept: int,
    ) -> None:
        """``fresh_from``: the outbox's last seq at start; seqs above it were created by this
        process, so no ack for them can predate it and their send time bounds the clock."""
        self.device_id = device_id
        self.epoch = epoch
        self.gateway_keys = dict(gateway_keys)
        if not self.gateway_keys:
            log.error(
                "device %s: no gateway key pinned: every ack is refused, nothing leaves the "
                "outbox ([trust] gateway_public_keys)",
                device_id,
            )
        self._lock = threading.Lock()
        self._fresh_from = fresh_from
        self._send_times_kept = send_times_kept
        self.sent_max = 0  # highest seq handed to the broker by this process
        self._mono_of_seq: dict[int, float] = {}  # seq -> when first published (clock bound)
        self.heartbeats: dict[int, float] = {}  # nonce -> when sent (the last few)

    def note_sent(self, seq: int) -> None:
        """The pump handed ``seq`` to the broker: acks may name it from now on."""
        with self._lock:
            if seq <= self.sent_max:
                return
            self.sent_max = seq
            if seq > self._fresh_from:  # no ack for it can predate this process
                self._mono_of_seq[seq] = time.monotonic()
            while len(self._mono_of_seq) > self._send_times_kept:
                self._mono_of_seq.pop(next(iter(self._mono_of_seq)))

    def new_heartbeat(self, sent: float) -> int:
        """A nonce for the heartbeat leaving at monotonic time ``sent``."""
        nonce = 1 + secrets.randbelow(2**53 - 1)  # random: an old ack cannot match it
        with self._lock:
            self.heartbeats[nonce] = sent
            while len(self.heartbeats) > HEARTBEATS_KEPT:
                self.heartbeats.pop(next(iter(self.heartbeats)))
        return nonce

    def check(self, payload: bytes) -> Ack:
        """The ack in ``payload`` if the unit may believe it; else ``AckError`` (its reason)."""
        # no pinned key (refused by device/config.py anyway): every ack is wrong_key
        ack = open_ack(payload, self.gateway_keys, self.device_id, self.epoch)
        with self._lock:
            if ack.highest() > self.sent_max:
                raise AckError("not_sent", f"names seq {ack.highest()} > {self.sent_max}")
        return ack

    def gateway_time(self, ack: Ack, received: float) -> GatewayTime | None:
        """The gateway's clock as a checked ack gives it, if the ack answers something this
        process sent (a heartbeat nonce or a fresh seq); ``received``: monotonic arrival."""
        with self._lock:
            sent = self.heartbeats.get(ack.hb) if ack.hb is not None else None
            top = ack.highest()
            if top and top in self._mono_of_seq:
                seq_sent = self._mono_of_seq[top]
                sent = seq_sent if sent is None else max(sent, seq_sent)
        if sent is None:
            return None
        return GatewayTime(ack.t_ms, ack.sync, sent, received)
