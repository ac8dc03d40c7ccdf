"""Share the passes accepted at this site with all its units; flag the repeats seen afterwards.

After each committed batch, ingest hands the events here (``note_committed``). Every scan that
a unit let through (verdict ``pass``) adds its pass reference to a bounded set (the site's
duplicate window, at most ``max_refs``), and the set goes out as one signed, retained snapshot
on ``chot/v1/{site}/recent`` (protocol/recent.py), at most every ``min_interval_s``. Units merge
it into their own on-disk set and refuse the same pass as ``duplicate_recent`` on any lane.

Units cut off from the gateway still decide alone, so the same pass can be let through at two
lanes. The gateway sees it afterwards: a second ``pass`` of a reference it already holds is
kept as a ``RepeatEntry`` (lanes, times; no personal data) for the status page, newest first.

The window is the site's policy (gateway config ``[policy] duplicate_window_s``, equal to the
units' own). On start the gateway rebuilds the set from its store (the accepted scans within
the window, signed bytes kept) and republishes it once connected, so a unit that joins after a
gateway restart, or after the broker lost its retained copy, still gets those passes.
"""

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from nacl.signing import SigningKey

from gateway.store.records import Accepted
from protocol import cose
from protocol.events import parse_event_payload
from protocol.reasons import ProtocolError
from protocol.recent import MAX_REFS, RecentRef, RecentSnapshot, sign_recent

log = logging.getLogger(__name__)

MAX_REPEATS_SHOWN = 100


@dataclass(frozen=True)
class RepeatEntry:
    """The same pass let through twice within the window (seen after the fact)."""

    ref: str  # first 8 hex digits of the pass reference: enough to find the events
    first_device: str
    first_lane: str | None
    first_t_ms: int
    device: str
    lane: str | None
    t_ms: int
    cross_lane: bool


@dataclass
class _Seen:
    eid: bytes
    t_ms: int
    device: str
    lane: str | None


class RecentPassesPublisher:
    """Thread-safe: ingest's committer thread calls ``note_committed``; the web reads."""

    def __init__(
        self,
        gateway_id: str,
        site: str,
        key: SigningKey,
        publish: Callable[[str, bytes], None],
        topic: str,
        *,
        window_s: float = 1800.0,
        max_refs: int = 4096,
        min_interval_s: float = 0.2,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.gateway_id = gateway_id
        self.site = site
        self.window_s = window_s
        self.max_refs = min(max_refs, MAX_REFS)
        self.min_interval_s = min_interval_s
        self._key = key
        self._publish = publish
        self._topic = topic
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()  # oldest first
        self._repeats: deque[RepeatEntry] = deque(maxlen=MAX_REPEATS_SHOWN)
        self._published_at = float("-inf")
        self._timer: threading.Timer | None = None
        self.stats = {"published": 0, "repeats": 0, "cross_lane_repeats": 0}

    def note_committed(self, events: Iterable[Accepted]) -> None:
        """The events a batch stored: remember the accepted passes, then publish."""
        added = False
        with self._lock:
            for ev in events:
                if ev.typ != "scan" or ev.verdict != "pass":
                    continue
                ref = _pass_ref(ev)
                if ref is None:
                    continue
                self._note(ref, ev)
                added = True
        if added:
            self._schedule()

    def since_ms(self) -> int:
        """The oldest device time still within the window."""
        return self._wall_ms() - int(self.window_s * 1000)

    def rebuild(self, events: Iterable[Accepted]) -> int:
        """At start: the accepted passes the store holds within the window (oldest first);
        published with the next snapshot (``publish_now`` once the broker is connected)."""
        with self._lock:
            for ev in events:
                ref = _pass_ref(ev)
                if ref is not None:
                    self._note(ref, ev)
            self._expire()
            held = len(self._seen)
        log.info("recent passes rebuilt from the store: %d within %.0f s", held, self.window_s)
        return held

    def _note(self, ref: bytes, ev: Accepted) -> None:
        held = self._seen.get(ref)
        if held is not None and held.eid == ev.eid:
            return  # the same event again (a redelivery), not a second entry
        if held is not None and abs(ev.t_ms - held.t_ms) <= self.window_s * 1000:
            repeat = RepeatEntry(
                ref.hex()[:8],
                held.device,
                held.lane,
                held.t_ms,
                ev.dev,
                ev.lane,
                ev.t_ms,
                cross_lane=held.device != ev.dev,
            )
            self._repeats.appendleft(repeat)
            self.stats["repeats"] += 1
            self.stats["cross_lane_repeats"] += repeat.cross_lane
            log.warning(
                "pass %s let through twice within the window: %s then %s",
                repeat.ref,
                held.device,
                ev.dev,
            )
            if ev.t_ms <= held.t_ms:
                return
        self._seen[ref] = _Seen(ev.eid, ev.t_ms, ev.dev, ev.lane)
        self._seen.move_to_end(ref)
        self._expire()

    def _expire(self) -> None:
        cutoff = self._wall_ms() - self.window_s * 1000
        while self._seen:
            ref, oldest = next(iter(self._seen.items()))
            if oldest.t_ms >= cutoff and len(self._seen) <= self.max_refs:
                break
            del self._seen[ref]

    def _schedule(self) -> None:
        """Publish now, or once ``min_interval_s`` after the last publish (coalesced)."""
        with self._lock:
            wait = self._published_at + self.min_interval_s - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self.publish_now)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.publish_now()

    def publish_now(self) -> None:
        with self._lock:
            self._timer = None
            self._published_at = time.monotonic()
            self._expire()
            now = self._wall_ms()
            refs = tuple(
                RecentRef(ref, max(0, (now - seen.t_ms) // 1000))
                for ref, seen in self._seen.items()
            )
        raw = sign_recent(RecentSnapshot(self.gateway_id, self.site, now, refs), self._key)
        try:
            self._publish(self._topic, raw)
            self.stats["published"] += 1
        except Exception:
            log.exception("recent passes: snapshot of %d refs not published", len(refs))

    def repeats(self) -> list[dict]:
        """For the status page: newest first."""
        with self._lock:
            return [asdict(r) for r in self._repeats]

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def _pass_ref(ev: Accepted) -> bytes | None:
    """The pass reference of the (already verified) event: as the verifier read it, or read
    again from the signed bytes for a record loaded back from the store."""
    ref = ev.ref
    if ref is None:
        try:
            ref = parse_event_payload(cose.parse_sign1(ev.raw).payload).ref
        except ProtocolError:
            return None
    return ref if ref is not None and len(ref) == 16 else None
