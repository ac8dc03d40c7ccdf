"""Reading a gateway's signed acks as an observer (benchmarks, tests): which seqs of which
(device, outbox epoch) some ack named, and up to where each is complete.

Each ack is verified with `protocol.ack.open_signed_ack` against the gateway keys given, so an
observer counts only what a unit pinning those keys would accept (device and epoch checks are
the unit's own and are kept here as the key of the tally).
"""

import threading
from dataclasses import dataclass, field

from protocol.ack import AckError, open_signed_ack


@dataclass
class AckTally:
    """Seqs named per (device, epoch); thread-safe (paho calls `add` on its thread)."""

    gateway_keys: dict[str, bytes]  # gateway id -> Ed25519 public key
    named: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    complete: dict[tuple[str, int], int] = field(default_factory=dict)  # 1..n all named
    acks: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, payload: bytes) -> bool:
        """Count one ack payload; False (and counted as refused) when it does not verify."""
        try:
            ack = open_signed_ack(bytes(payload), self.gateway_keys)
        except AckError:
            with self._lock:
                self.refused += 1
            return False
        key = (ack.dev, ack.ep)
        with self._lock:
            self.acks += 1
            seqs = self.named.setdefault(key, set())
            if ack.upto:
                seqs.update(range(1, ack.upto + 1))
            for r in ack.ranges:
                seqs.update(range(r.lo, r.hi + 1))
            n = self.complete.get(key, 0)
            while n + 1 in seqs:
                n += 1
            self.complete[key] = n
        return True

    def acked_upto(self, dev: str, ep: int) -> int:
        """The highest seq n with 1..n all named for this device's epoch."""
        with self._lock:
            return self.complete.get((dev, ep), 0)
