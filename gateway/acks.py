"""The gateway's signed end-to-end acks (protocol/ack.py): per device and outbox epoch.

Ingest tells it which events a batch committed (stored, duplicate or quarantined: each is held
durably here) and which heartbeats arrived; `flush` signs and publishes one ack per (device,
epoch) naming exactly the seqs committed since the last flush, with the gateway's time and
whether its clock is synchronised (common/timesync.py), and echoes the newest heartbeat nonce
so a unit without NTP gets a bounded clock. A new epoch (a re-imaged unit, announced by its
events and heartbeats) is simply followed: acks never name seqs of another epoch.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from common.timesync import SyncState
from gateway.store.records import Accepted
from protocol import topics
from protocol.ack import MAX_RANGES, Ack, ranges_of, sign_ack

log = logging.getLogger(__name__)


@dataclass
class AckSigner:
    gateway_id: str
    site: str
    key: SigningKey
    sync: SyncState = field(default_factory=SyncState)
    wall: Callable[[], float] = time.time
    _seqs: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    _heartbeats: dict[str, tuple[int, int]] = field(default_factory=dict)  # dev -> (ep, hb)
    signed: int = 0

    def note_committed(self, events: Iterable[Accepted]) -> None:
        """Events now held durably. An event from before epochs (ep 0: protocol/events.py
        bounds a real `ep` to >= 1) gets no signed ack: its unit could not read one."""
        for ev in events:
            if ev.ep:
                self._seqs.setdefault((ev.dev, ev.ep), set()).add(ev.seq)

    def note_heartbeat(self, dev: str, ep: int | None, hb: int | None) -> None:
        if ep is not None and hb is not None:
            self._heartbeats[dev] = (ep, hb)

    def flush(self, publish: Callable[[str, bytes], None]) -> None:
        """Sign and publish what was noted since the last flush (topic, payload)."""
        seqs, self._seqs = self._seqs, {}
        beats, self._heartbeats = self._heartbeats, {}
        keys = set(seqs) | {(dev, ep) for dev, (ep, _) in beats.items()}
        if not keys:
            return
        t_ms, synced = int(self.wall() * 1000), self.sync.synced()
        for dev, ep in sorted(keys):
            beat = beats.get(dev)
            hb = beat[1] if beat and beat[0] == ep else None
            ranges = ranges_of(seqs.get((dev, ep), set()))
            chunks = [ranges[i : i + MAX_RANGES] for i in range(0, len(ranges), MAX_RANGES)]
            for chunk in chunks or [()]:
                ack = Ack(self.gateway_id, dev, ep, 0, chunk, t_ms, synced, hb)
                publish(topics.ack_topic(self.site, dev), sign_ack(ack, self.key))
                self.signed += 1
