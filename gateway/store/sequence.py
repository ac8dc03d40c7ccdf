"""Sequence state per device AND outbox epoch: the ack point, and the gaps a lost or late event
leaves.

A unit numbers its events 1, 2, 3, ... within an outbox epoch `ep` (a random id chosen when its
outbox is created, carried in every event; protocol/ack.py). A unit re-imaged with the same
bundle starts a new epoch at seq 1, so each (device, epoch) is its own sequence: its row in
`epochs` keeps `contiguous` (everything at or below it stored), `highest`, and its gap totals;
its missing seqs are disjoint ranges in `seq_gaps` keyed (dev, ep, lo). An event that skips
ahead opens one range, a late arrival splits or shrinks the range it falls in, the paired
gateway's signed ack (`note_peer_ack`) fills what it names. Events from before epochs count as
epoch 0. A range older than `[store] gap_expiry_hours` is given up (`expire`) into its
epoch's `never_arrived`.

The gateway follows a unit's newest epoch: the first event of an epoch it has not seen makes
it the device's current one (`devices.ep`), whose position `devices.contiguous/highest`
mirrors for the status page; the older epochs keep their own accounting (a late event of one
still fills its gap). `devices.gap_*` are the device's totals over all its epochs, so a status
request never scans the ranges.

All functions here run inside the caller's transaction.
"""

import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass

from gateway.store.connection import bump
from gateway.store.gap_log import GapWarnings

log = logging.getLogger(__name__)
GAP_WARNINGS = GapWarnings(log)  # one line per device per minute: a flood of gaps is summed

StreamKey = tuple[str, int]  # (device, outbox epoch; 0 for events from before epochs)


@dataclass
class SeqState:
    """One (device, epoch)'s position, read once per batch and written back at its end."""

    contiguous: int  # highest seq with everything at or below it stored: the ack
    highest: int  # highest seq stored
    lane: str | None
    fresh: bool  # nothing stored yet: the first event sets the baseline
    new_epoch: bool = False  # the gateway had no row for this epoch: the device follows it
    ranges_delta: int = 0  # change to gap_ranges in this batch
    missing_delta: int = 0  # change to gap_missing in this batch

    @classmethod
    def new(cls) -> "SeqState":
        return cls(contiguous=0, highest=0, lane=None, fresh=True, new_epoch=True)


_PER_STATEMENT = 500  # devices named in one IN (...): far below SQLite's variable limit


def _in_parts(devs: list[str]) -> list[tuple[str, list[str]]]:
    """("?,?,...", devices) for each part of `devs`, for `WHERE dev IN (...)`."""
    parts = [devs[i : i + _PER_STATEMENT] for i in range(0, len(devs), _PER_STATEMENT)]
    return [(",".join("?" * len(part)), part) for part in parts]


def load_states(db: sqlite3.Connection, keys: set[StreamKey]) -> dict[StreamKey, SeqState]:
    """(device, epoch) -> its state, read once per batch; a device or an epoch seen for the
    first time gets its row now. Set-wise: a reconnect storm's batch names hundreds of units,
    and a statement per unit was most of the commit thread's time."""
    ordered = sorted(keys)
    found: dict[StreamKey, tuple[int, int, str | None]] = {}
    for marks, part in _in_parts(sorted({dev for dev, _ in ordered})):
        rows = db.execute(
            "SELECT e.dev, e.ep, e.contiguous, e.highest, d.lane FROM epochs e "
            f"JOIN devices d ON d.dev = e.dev WHERE e.dev IN ({marks})",
            part,
        ).fetchall()
        found.update(
            {(dev, ep): (contiguous, highest, lane) for dev, ep, contiguous, highest, lane in rows}
        )
    missing = [key for key in ordered if key not in found]
    if missing:
        db.executemany(
            "INSERT OR IGNORE INTO devices (dev) VALUES (?)", [(dev,) for dev, _ in missing]
        )
        db.executemany("INSERT INTO epochs (dev, ep) VALUES (?, ?)", missing)
    states: dict[StreamKey, SeqState] = {}
    for key in ordered:
        if key in found:
            contiguous, highest, lane = found[key]
            states[key] = SeqState(contiguous, highest, lane, fresh=(contiguous, highest) == (0, 0))
        else:
            states[key] = SeqState.new()
    return states


def save_states(db: sqlite3.Connection, states: dict[StreamKey, SeqState], t_ms: int) -> None:
    """Write the batch's positions back; the ack point follows the lowest open range. A new
    epoch becomes its device's current one. Three reads and three batched writes per batch,
    whatever the number of units in it."""
    current: dict[str, int | None] = {}  # each device's current epoch, as this batch moves it
    lowest_gap: dict[StreamKey, int] = {}
    for marks, part in _in_parts(sorted({dev for dev, _ in states})):
        current.update(db.execute(f"SELECT dev, ep FROM devices WHERE dev IN ({marks})", part))
        lowest_gap.update(
            ((dev, ep), lo)
            for dev, ep, lo in db.execute(
                f"SELECT dev, ep, MIN(lo) FROM seq_gaps WHERE dev IN ({marks}) GROUP BY dev, ep",
                part,
            )
        )
    epoch_rows, device_rows, follow_rows = [], [], []
    for (dev, ep), st in states.items():
        low = lowest_gap.get((dev, ep))
        st.contiguous = max(st.contiguous, st.highest if low is None else low - 1)
        epoch_rows.append(
            (st.contiguous, st.highest, t_ms, st.ranges_delta, st.missing_delta, dev, ep)
        )
        was = current.get(dev)
        if st.new_epoch and was is not None and was != ep:
            log.warning("device %s: new outbox epoch %d (was %d): following it", dev, ep, was)
        device_rows.append((st.lane, t_ms, st.ranges_delta, st.missing_delta, dev))
        if st.new_epoch or was is None or was == ep:
            follow_rows.append((ep, st.contiguous, st.highest, dev))
            current[dev] = ep
        st.ranges_delta = st.missing_delta = 0
        st.new_epoch = False
    db.executemany(
        "UPDATE epochs SET contiguous=?, highest=?, last_event_ms=?, "
        "gap_ranges=gap_ranges+?, gap_missing=gap_missing+? WHERE dev=? AND ep=?",
        epoch_rows,
    )
    db.executemany(
        "UPDATE devices SET lane=COALESCE(?, lane), last_event_ms=?, "
        "gap_ranges=gap_ranges+?, gap_missing=gap_missing+? WHERE dev=?",
        device_rows,
    )
    db.executemany("UPDATE devices SET ep=?, contiguous=?, highest=? WHERE dev=?", follow_rows)


def ack_point(db: sqlite3.Connection, dev: str, ep: int, contiguous: int, highest: int) -> int:
    """One below the epoch's lowest open range (or `highest`), never below the old ack: a
    device may already have dropped what was acknowledged."""
    row = db.execute("SELECT MIN(lo) FROM seq_gaps WHERE dev=? AND ep=?", (dev, ep)).fetchone()
    point = highest if row[0] is None else row[0] - 1
    return max(contiguous, point)


def advance(
    db: sqlite3.Connection,
    dev: str,
    ep: int,
    seq: int,
    state: SeqState,
    t_ms: int,
    counts: Counter[str],
) -> None:
    """Account for one newly stored event of (dev, ep)."""
    advance_range(db, dev, ep, seq, seq, state, t_ms, counts)


def advance_range(
    db: sqlite3.Connection,
    dev: str,
    ep: int,
    lo: int,
    hi: int,
    state: SeqState,
    t_ms: int,
    counts: Counter[str],
) -> None:
    """Account for seqs lo..hi of (dev, ep) now held (stored here, or by the paired gateway):
    open a range when they skip ahead, or take them out of the ranges they fill.
    `save_states` then moves the ack point."""
    if state.fresh:
        # The first seqs seen of this epoch: the store cannot know about events acked before
        # it existed (an outbox starts at its oldest unacknowledged event), so the baseline
        # is just below them. A re-imaged unit's new epoch starts at 1.
        state.contiguous = state.highest = lo - 1
        state.fresh = False
    if lo > state.highest + 1:
        db.execute(
            "INSERT INTO seq_gaps (dev, ep, lo, hi, opened_ms) VALUES (?,?,?,?,?)",
            (dev, ep, state.highest + 1, lo - 1, t_ms),
        )
        state.ranges_delta += 1
        state.missing_delta += lo - 1 - state.highest
        counts["gaps_opened"] += 1
        GAP_WARNINGS.opened(dev, state.highest + 1, lo - 1, ep)
    elif lo <= state.highest:
        fill(db, dev, ep, max(lo, state.contiguous + 1), min(hi, state.highest), state, counts)
    state.highest = max(state.highest, hi)


def fill(
    db: sqlite3.Connection,
    dev: str,
    ep: int,
    lo: int,
    hi: int,
    state: SeqState,
    counts: Counter[str],
) -> None:
    """Late arrivals lo..hi: shrink, split or close the ranges they fall in (none: seqs
    already stored, nothing to fill). Split pieces keep their range's age."""
    if lo > hi:
        return
    rows = db.execute(
        "SELECT lo, hi, opened_ms FROM seq_gaps WHERE dev=? AND ep=? AND hi>=? AND lo<=? "
        "ORDER BY lo",
        (dev, ep, lo, hi),
    ).fetchall()
    for g_lo, g_hi, opened_ms in rows:
        db.execute("DELETE FROM seq_gaps WHERE dev=? AND ep=? AND lo=?", (dev, ep, g_lo))
        pieces = [(g_lo, lo - 1), (hi + 1, g_hi)]
        kept = [(a, b) for a, b in pieces if a <= b]
        db.executemany(
            "INSERT INTO seq_gaps (dev, ep, lo, hi, opened_ms) VALUES (?,?,?,?,?)",
            [(dev, ep, a, b, opened_ms) for a, b in kept],
        )
        filled = (g_hi - g_lo + 1) - sum(b - a + 1 for a, b in kept)
        state.missing_delta -= filled
        state.ranges_delta += len(kept) - 1
        if not kept:
            counts["gaps_closed"] += 1
            log.info("sequence gap closed device=%s ep=%d up to seq=%d", dev, ep, g_hi)


def expire(db: sqlite3.Connection, opened_before_ms: int) -> tuple[int, int]:
    """Give up on ranges opened before the cut-off: their seqs move into their epoch's (and
    device's) `never_arrived`, and the epoch's ack point moves past them. Returns (ranges,
    seqs)."""
    GAP_WARNINGS.flush_due()  # the summaries of gap floods that have stopped
    where, params = "opened_ms < ?", (opened_before_ms,)
    dropped = db.execute(
        f"SELECT dev, ep, COUNT(*), SUM(hi - lo + 1) FROM seq_gaps WHERE {where} GROUP BY dev, ep",
        params,
    ).fetchall()
    if not dropped:
        return 0, 0
    db.execute(f"DELETE FROM seq_gaps WHERE {where}", params)
    for dev, ep, n, missing in dropped:
        contiguous, highest = db.execute(
            "SELECT contiguous, highest FROM epochs WHERE dev=? AND ep=?", (dev, ep)
        ).fetchone()
        point = ack_point(db, dev, ep, contiguous, highest)
        for table, extra in (("epochs", " AND ep=?"), ("devices", "")):
            db.execute(
                f"UPDATE {table} SET gap_ranges=gap_ranges-?, gap_missing=gap_missing-?, "
                f"never_arrived=never_arrived+? WHERE dev=?{extra}",
                (n, missing, missing, dev, *((ep,) if extra else ())),
            )
        db.execute("UPDATE epochs SET contiguous=? WHERE dev=? AND ep=?", (point, dev, ep))
        db.execute("UPDATE devices SET contiguous=? WHERE dev=? AND ep=?", (point, dev, ep))
        log.warning(
            "sequence gaps given up device=%s ep=%d ranges=%d never_arrived=%d",
            dev,
            ep,
            n,
            missing,
        )
    ranges = sum(row[2] for row in dropped)
    seqs = sum(row[3] for row in dropped)
    bump(db, {"gaps_expired": ranges, "seqs_never_arrived": seqs})
    return ranges, seqs


def note_peer_ack(
    db: sqlite3.Connection, dev: str, ep: int, ranges: list[tuple[int, int]], t_ms: int
) -> int:
    """The paired gateway's signed ack: it holds seqs `ranges` of (dev, ep) durably, so they
    count as held here too (our ranges below them are filled, the ack point may jump).
    Returns the epoch's ack point after it."""
    states = load_states(db, {(dev, ep)})
    state = states[(dev, ep)]
    counts: Counter[str] = Counter()
    for lo, hi in sorted(ranges):
        advance_range(db, dev, ep, lo, hi, state, t_ms, counts)
    save_states(db, states, t_ms)
    bump(db, counts)
    if counts["gaps_closed"]:
        log.info("sequence gaps closed by peer ack device=%s ep=%d", dev, ep)
    return state.contiguous


def gap_totals(db: sqlite3.Connection, exclude: str | None) -> tuple[int, int, int]:
    """(open ranges, missing seqs, never arrived) over all devices and epochs: one row per
    device read, whatever the number of ranges."""
    return db.execute(
        "SELECT COALESCE(SUM(gap_ranges), 0), COALESCE(SUM(gap_missing), 0), "
        "COALESCE(SUM(never_arrived), 0) FROM devices WHERE dev IS NOT ?",
        (exclude,),
    ).fetchone()
