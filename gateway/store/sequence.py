"""Per-device sequence state: the ack point, and the gaps a lost or late event leaves.

Every device numbers its events 1, 2, 3, ... The gateway acknowledges the highest `contiguous`
seq (everything at or below it is stored), so a device may drop those from its outbox. What is
missing below `highest` is kept exactly, as disjoint ranges in `seq_gaps` (indexed by
(dev, lo)): an event that skips ahead opens one range, a late arrival splits or shrinks the
range it falls in, the paired gateway's ack (`note_peer_ack`) trims them. So `contiguous` is
just "one below the lowest open range" (or `highest`), one index lookup. Each device row keeps
its number of ranges and of missing seqs, so a status request never scans the ranges.
A range older than `[store] gap_expiry_hours` is given up (`expire`): its seqs are counted in
`devices.never_arrived` and the ack point moves past it.

All functions here run inside the caller's transaction.
"""

import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass

from gateway.store.connection import bump, rows_in
from gateway.store.gap_log import GapWarnings

log = logging.getLogger(__name__)
GAP_WARNINGS = GapWarnings(log)  # one line per device per minute: a flood of gaps is summed


@dataclass
class SeqState:
    """One device's position, read once per batch and written back at its end."""

    contiguous: int  # highest seq with everything at or below it stored: the ack
    highest: int  # highest seq stored
    lane: str | None
    fresh: bool  # nothing stored yet: the first event sets the baseline
    ranges_delta: int = 0  # change to devices.gap_ranges in this batch
    missing_delta: int = 0  # change to devices.gap_missing in this batch

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
    """Write the batch's positions back; the ack point follows the lowest open range."""
    for dev, st in states.items():
        st.contiguous = ack_point(db, dev, st.contiguous, st.highest)
    db.executemany(
        "UPDATE devices SET contiguous=?, highest=?, last_event_ms=?, lane=?, "
        "gap_ranges=gap_ranges+?, gap_missing=gap_missing+? WHERE dev=?",
        [
            (st.contiguous, st.highest, t_ms, st.lane, st.ranges_delta, st.missing_delta, dev)
            for dev, st in states.items()
        ],
    )


def ack_point(db: sqlite3.Connection, dev: str, contiguous: int, highest: int) -> int:
    """One below the device's lowest open range (or `highest`), never below the old ack: a
    device may already have dropped what was acknowledged."""
    row = db.execute("SELECT MIN(lo) FROM seq_gaps WHERE dev=?", (dev,)).fetchone()
    point = highest if row[0] is None else row[0] - 1
    return max(contiguous, point)


def advance(
    db: sqlite3.Connection,
    dev: str,
    seq: int,
    state: SeqState,
    t_ms: int,
    counts: Counter[str],
) -> None:
    """Account for one newly stored event: open a range when it skips ahead, or take it out
    of the range it fills. `save_states` then moves the ack point."""
    if state.fresh:
        # First event ever seen from this device: the store cannot know about events acked
        # before it existed (a device's outbox starts at its oldest unacknowledged event),
        # so the baseline is just below it.
        state.contiguous = state.highest = seq - 1
        state.fresh = False
    if seq > state.highest:
        if seq > state.highest + 1:
            db.execute(
                "INSERT INTO seq_gaps (dev, lo, hi, opened_ms) VALUES (?,?,?,?)",
                (dev, state.highest + 1, seq - 1, t_ms),
            )
            state.ranges_delta += 1
            state.missing_delta += seq - 1 - state.highest
            counts["gaps_opened"] += 1
            GAP_WARNINGS.opened(dev, state.highest + 1, seq - 1)
        state.highest = seq
    elif seq > state.contiguous:
        fill(db, dev, seq, state, counts)


def fill(db: sqlite3.Connection, dev: str, seq: int, state: SeqState, counts: Counter[str]) -> None:
    """A late arrival: shrink or split the range holding `seq` (none: a second event with a
    seq already stored, nothing to fill)."""
    row = db.execute(
        "SELECT lo, hi FROM seq_gaps WHERE dev=? AND lo<=? ORDER BY lo DESC LIMIT 1", (dev, seq)
    ).fetchone()
    if row is None or row[1] < seq:
        return
    lo, hi = row
    state.missing_delta -= 1
    if lo == hi:
        db.execute("DELETE FROM seq_gaps WHERE dev=? AND lo=?", (dev, lo))
        state.ranges_delta -= 1
        counts["gaps_closed"] += 1
        log.info("sequence gap closed device=%s seq=%d", dev, seq)
    elif seq == lo:
        db.execute("UPDATE seq_gaps SET lo=? WHERE dev=? AND lo=?", (seq + 1, dev, lo))
    elif seq == hi:
        db.execute("UPDATE seq_gaps SET hi=? WHERE dev=? AND lo=?", (seq - 1, dev, lo))
    else:  # split: [lo, seq-1] stays, [seq+1, hi] is new, both as old as the range was
        db.execute("UPDATE seq_gaps SET hi=? WHERE dev=? AND lo=?", (seq - 1, dev, lo))
        db.execute(
            "INSERT INTO seq_gaps (dev, lo, hi, opened_ms) "
            "SELECT dev, ?, ?, opened_ms FROM seq_gaps WHERE dev=? AND lo=?",
            (seq + 1, hi, dev, lo),
        )
        state.ranges_delta += 1


def _drop_ranges(db: sqlite3.Connection, where: str, params: tuple) -> dict[str, tuple[int, int]]:
    """Delete the ranges matching `where`; returns device -> (ranges, seqs) deleted."""
    dropped = {
        dev: (n, missing)
        for dev, n, missing in db.execute(
            f"SELECT dev, COUNT(*), SUM(hi - lo + 1) FROM seq_gaps WHERE {where} GROUP BY dev",
            params,
        )
    }
    if dropped:
        db.execute(f"DELETE FROM seq_gaps WHERE {where}", params)
    return dropped


def expire(db: sqlite3.Connection, opened_before_ms: int) -> tuple[int, int]:
    """Give up on ranges opened before the cut-off: their seqs move into the devices'
    `never_arrived`, and each device's ack point moves past them. Returns (ranges, seqs)."""
    GAP_WARNINGS.flush_due()  # the summaries of gap floods that have stopped
    dropped = _drop_ranges(db, "opened_ms < ?", (opened_before_ms,))
    for dev, (n, missing) in dropped.items():
        contiguous, highest = db.execute(
            "SELECT contiguous, highest FROM devices WHERE dev=?", (dev,)
        ).fetchone()
        db.execute(
            "UPDATE devices SET gap_ranges=gap_ranges-?, gap_missing=gap_missing-?, "
            "never_arrived=never_arrived+?, contiguous=? WHERE dev=?",
            (n, missing, missing, ack_point(db, dev, contiguous, highest), dev),
        )
        log.warning("sequence gaps given up device=%s ranges=%d never_arrived=%d", dev, n, missing)
    ranges = sum(n for n, _ in dropped.values())
    seqs = sum(m for _, m in dropped.values())
    bump(db, {"gaps_expired": ranges, "seqs_never_arrived": seqs})
    return ranges, seqs


def note_peer_ack(db: sqlite3.Connection, dev: str, seq: int) -> int | None:
    """The paired gateway acknowledged `dev` up to `seq`: it holds those events durably,
    so our ranges below it are filled and our ack point may jump. Returns the new ack if it
    moved."""
    row = db.execute("SELECT contiguous, highest FROM devices WHERE dev=?", (dev,)).fetchone()
    if row is None:
        db.execute("INSERT INTO devices (dev, contiguous, highest) VALUES (?,?,?)", (dev, seq, seq))
        return None
    contiguous, highest = row
    if seq <= contiguous:
        return None
    dropped = _drop_ranges(db, "dev=? AND hi<=?", (dev, seq))
    n, missing = dropped.get(dev, (0, 0))
    straddling = db.execute(
        "SELECT lo FROM seq_gaps WHERE dev=? AND lo<=? AND hi>?", (dev, seq, seq)
    ).fetchone()
    if straddling:
        db.execute("UPDATE seq_gaps SET lo=? WHERE dev=? AND lo=?", (seq + 1, dev, straddling[0]))
        missing += seq + 1 - straddling[0]
    highest = max(highest, seq)
    contiguous = ack_point(db, dev, contiguous, highest)
    db.execute(
        "UPDATE devices SET contiguous=?, highest=?, gap_ranges=gap_ranges-?, "
        "gap_missing=gap_missing-? WHERE dev=?",
        (contiguous, highest, n, missing, dev),
    )
    bump(db, {"gaps_closed": n})
    if n:
        log.info("sequence gaps closed by peer ack device=%s up to seq=%d", dev, seq)
    return contiguous


def gap_totals(db: sqlite3.Connection, exclude: str | None) -> tuple[int, int, int]:
    """(open ranges, missing seqs, never arrived) over all devices: one row per device read,
    whatever the number of ranges."""
    return db.execute(
        "SELECT COALESCE(SUM(gap_ranges), 0), COALESCE(SUM(gap_missing), 0), "
        "COALESCE(SUM(never_arrived), 0) FROM devices WHERE dev IS NOT ?",
        (exclude,),
    ).fetchone()
