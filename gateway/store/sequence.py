"""Per-device sequence state: the ack point, and the gaps a lost or late event leaves.

Every device numbers its events 1, 2, 3, ... The gateway acknowledges the highest `contiguous`
seq (everything at or below it is stored), so a device may drop those from its outbox. An
event that skips ahead opens a gap (kept in `gaps` and shown to operators); the late arrival
that fills it, or the paired gateway's ack (`note_peer_ack`), moves `contiguous` on and
closes it. All functions here run inside the caller's transaction.
"""

import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass

from gateway.store.connection import bump, now_ms, rows_in

log = logging.getLogger(__name__)


@dataclass
class SeqState:
    """One device's position, read once per batch and written back at its end."""

    contiguous: int  # highest seq with everything at or below it stored: the ack
    highest: int  # highest seq stored
    lane: str | None
    fresh: bool  # nothing stored yet: the first event sets the baseline

    @classmethod
    def new(cls) -> "SeqState":
        return cls(contiguous=0, highest=0, lane=None, fresh=True)


def load_states(db: sqlite3.Connection, devices: set[str]) -> dict[str, SeqState]:
    """Device -> its state, read once per batch; a device seen for the first time gets its
    row now."""
    states = {
        dev: SeqState(contiguous, highest, lane, fresh=(contiguous, highest) == (0, 0))
        for dev, contiguous, highest, lane in rows_in(
            db,
            "SELECT dev, contiguous, highest, lane FROM devices WHERE dev IN ({})",
            sorted(devices),
        )
    }
    missing = devices - states.keys()
    db.executemany("INSERT INTO devices (dev) VALUES (?)", [(dev,) for dev in missing])
    states.update({dev: SeqState.new() for dev in missing})
    return states


def save_states(db: sqlite3.Connection, states: dict[str, SeqState], t_ms: int) -> None:
    db.executemany(
        "UPDATE devices SET contiguous=?, highest=?, last_event_ms=?, lane=? WHERE dev=?",
        [(st.contiguous, st.highest, t_ms, st.lane, dev) for dev, st in states.items()],
    )


def advance(
    db: sqlite3.Connection,
    dev: str,
    seq: int,
    state: SeqState,
    t_ms: int,
    counts: Counter[str],
) -> None:
    """Account for one newly stored event (call once all of the batch's rows are in: a late
    arrival can then walk over later seqs)."""
    if state.fresh:
        # First event ever seen from this device: the store cannot know about events acked
        # before it existed (a device's outbox starts at its oldest unacknowledged event),
        # so the baseline is just below it.
        state.contiguous = state.highest = seq - 1
        state.fresh = False
    if seq > state.highest + 1:
        db.execute(
            "INSERT INTO gaps (dev, lo, hi, opened_ms) VALUES (?,?,?,?)",
            (dev, state.highest + 1, seq - 1, t_ms),
        )
        counts["gaps_opened"] += 1
        log.warning("sequence gap device=%s missing=%d..%d", dev, state.highest + 1, seq - 1)
    state.highest = max(state.highest, seq)
    if seq == state.contiguous + 1:
        state.contiguous = extend(db, dev, seq, state.highest)


def extend(db: sqlite3.Connection, dev: str, contiguous: int, highest: int) -> int:
    """Walk forward over stored seqs so an arrival that fills a gap moves the ack on."""
    while contiguous < highest:
        hit = db.execute(
            "SELECT 1 FROM events WHERE dev=? AND seq=? LIMIT 1", (dev, contiguous + 1)
        ).fetchone()
        if not hit:
            break
        contiguous += 1
    return contiguous


def devices_with_open_gaps(db: sqlite3.Connection, devices: list[str]) -> set[str]:
    return {
        r[0]
        for r in rows_in(
            db, "SELECT dev FROM gaps WHERE closed_ms IS NULL AND dev IN ({})", devices
        )
    }


def close_gaps(
    db: sqlite3.Connection, dev: str, contiguous: int, t_ms: int, counts: Counter[str]
) -> None:
    cur = db.execute(
        "UPDATE gaps SET closed_ms=? WHERE dev=? AND closed_ms IS NULL AND hi<=?",
        (t_ms, dev, contiguous),
    )
    if cur.rowcount:
        counts["gaps_closed"] += cur.rowcount
        log.info("sequence gap closed device=%s up to seq=%d", dev, contiguous)


def note_peer_ack(db: sqlite3.Connection, dev: str, seq: int) -> int | None:
    """The paired gateway acknowledged `dev` up to `seq`: it holds those events durably,
    so our own contiguous point may jump to it. Returns the new ack if it moved."""
    row = db.execute("SELECT contiguous, highest FROM devices WHERE dev=?", (dev,)).fetchone()
    if row is None:
        db.execute("INSERT INTO devices (dev, contiguous, highest) VALUES (?,?,?)", (dev, seq, seq))
        return None
    contiguous, highest = row
    if seq <= contiguous:
        return None
    highest = max(highest, seq)
    contiguous = extend(db, dev, seq, highest)
    db.execute("UPDATE devices SET contiguous=?, highest=? WHERE dev=?", (contiguous, highest, dev))
    counts: Counter[str] = Counter()
    close_gaps(db, dev, contiguous, now_ms(), counts)
    bump(db, counts)
    return contiguous
