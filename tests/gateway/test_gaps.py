"""Sequence gaps kept as exact ranges (issue #13, item 9).

One unit that opened 7,500 gaps once made every status request scan up to 10,000 numbers per
gap (4 ms -> 2.5 s). Now: late arrivals split ranges exactly (a property test against a
plain set model), a status request does the same work whatever the number of ranges
(counted in SQLite VM steps, not wall-clock time), old ranges age out into a counted
"never arrived" figure, and a gateway.db written before ranges is upgraded in place.
"""

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store import Store
from tests.support.store_rows import event

HOUR_MS = 3_600_000


def ranges_of(store: Store, dev: str) -> list[tuple[int, int]]:
    return (
        store._db()
        .execute("SELECT lo, hi FROM seq_gaps WHERE dev=? ORDER BY lo", (dev,))
        .fetchall()
    )


def runs(missing: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive numbers, as (lo, hi)."""
    out: list[tuple[int, int]] = []
    for n in sorted(missing):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


class Model:
    """What the store must hold, with plain sets: the seqs received above the first one's
    baseline, and those a peer gateway holds."""

    def __init__(self) -> None:
        self.baseline: int | None = None
        self.highest = 0
        self.held: set[int] = set()

    def arrive(self, seq: int) -> None:
        if self.baseline is None:
            self.baseline = self.highest = seq - 1
        self.held.add(seq)
        self.highest = max(self.highest, seq)

    def peer_ack(self, lo: int, hi: int) -> None:
        """The paired gateway's signed ack names seqs lo..hi it holds: as if they arrived."""
        for seq in range(lo, hi + 1):
            self.arrive(seq)

    @property
    def missing(self) -> set[int]:
        if self.baseline is None:
            return set()
        return set(range(self.baseline + 1, self.highest + 1)) - self.held

    @property
    def contiguous(self) -> int:
        missing = self.missing
        return min(missing) - 1 if missing else self.highest


steps = st.lists(
    st.tuples(st.sampled_from(["event", "event", "event", "batch", "peer"]), st.integers(1, 80)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_late_arrivals_split_ranges_like_a_set_model(moves) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gateway.db")
        model = Model()
        try:
            for kind, seq in moves:
                if kind == "event":
                    store.commit_batch([event("d1", seq)])
                    model.arrive(seq)
                elif kind == "batch":  # several in one transaction, out of order
                    seqs = [seq, max(1, seq - 7), seq + 3]
                    store.commit_batch([event("d1", s) for s in seqs])
                    for s in seqs:
                        model.arrive(s)
                else:
                    store.note_peer_ack("d1", 0, [(seq, seq + 2)])
                    model.peer_ack(seq, seq + 2)
                assert ranges_of(store, "d1") == runs(model.missing)
                assert store.ack_for("d1") == model.contiguous
            (info,) = store.devices()
            assert (info.open_gaps, info.missing) == (len(runs(model.missing)), len(model.missing))
        finally:
            store.close()


def seven_thousand_five_hundred_gaps(store: Store) -> None:
    """Seqs 1, 3, 5, ..., 15001: each skip opens a one-number gap."""
    odd = list(range(1, 15_002, 2))
    for i in range(0, len(odd), 500):
        store.commit_batch([event("d1", s) for s in odd[i : i + 500]])


def status_request_steps(store: Store) -> int:
    """SQLite VM steps for what a status request reads about gaps and devices."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    db = store._db()
    db.set_progress_handler(tick, 10)
    try:
        store.devices()
        store.open_gaps()
        store.gap_totals()
    finally:
        db.set_progress_handler(None, 10)
    return steps[0]


def test_status_work_does_not_grow_with_the_number_of_gaps(tmp_path) -> None:
    few = Store(tmp_path / "few.db")
    many = Store(tmp_path / "many.db")
    try:
        few.commit_batch([event("d1", 1), event("d1", 3)])
        seven_thousand_five_hundred_gaps(many)
        assert many.gap_totals() == {"open_ranges": 7_500, "missing": 7_500, "never_arrived": 0}
        assert len(many.open_gaps()) == 100  # the list is bounded too
        # bounded: at most the 100 listed ranges more than with one gap, never 7,500
        assert status_request_steps(many) < 3 * status_request_steps(few) + 200
        plan = " ".join(
            str(row)
            for row in many._db().execute(
                "EXPLAIN QUERY PLAN SELECT lo, hi FROM seq_gaps WHERE dev=? AND lo<=? "
                "ORDER BY lo DESC LIMIT 1",
                ("d1", 5_000),
            )
        )
        assert "PRIMARY KEY" in plan and "SCAN" not in plan
        # the late arrivals close them all, one range each, and the ack walks to the top
        many.commit_batch([event("d1", s) for s in range(2, 15_001, 2)])
        assert many.gap_totals()["open_ranges"] == 0 and many.ack_for("d1") == 15_001
        assert many.counters()["gaps_closed"] == 7_500
    finally:
        few.close()
        many.close()


def test_old_gaps_age_out_into_never_arrived(tmp_path) -> None:
    store = Store(tmp_path / "gateway.db", gap_expiry_hours=2)
    try:
        t0 = 1_790_000_000_000
        store.commit_batch([event("d1", 1), event("d1", 5)], received_ms=t0)  # 2..4 missing
        store.commit_batch([event("d1", 9)], received_ms=t0 + 90 * 60_000)  # 6..8, newer
        assert store.ack_for("d1") == 1
        store.maintain(now=t0 + 2 * HOUR_MS + 1)
        assert ranges_of(store, "d1") == [(6, 8)]
        (info,) = store.devices()
        assert (info.open_gaps, info.missing, info.never_arrived) == (1, 3, 3)
        assert store.ack_for("d1") == 5  # the ack moved past what will never come
        counters = store.counters()
        assert (counters["gaps_expired"], counters["seqs_never_arrived"]) == (1, 3)
        store.maintain(now=t0 + 4 * HOUR_MS)
        assert store.gap_totals() == {"open_ranges": 0, "missing": 0, "never_arrived": 6}
        assert store.ack_for("d1") == 9
    finally:
        store.close()


OLD_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, eid BLOB NOT NULL UNIQUE, dev TEXT NOT NULL,
    seq INTEGER NOT NULL, typ TEXT NOT NULL, t_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    verdict TEXT, reason TEXT, lane TEXT, kind TEXT, clock TEXT, raw BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', central_reason TEXT, central_detail TEXT,
    forwarded_ms INTEGER
);
CREATE TABLE devices (
    dev TEXT PRIMARY KEY, contiguous INTEGER NOT NULL DEFAULT 0,
    highest INTEGER NOT NULL DEFAULT 0, lane TEXT, last_event_ms INTEGER, status TEXT,
    status_ms INTEGER, heartbeat TEXT, heartbeat_ms INTEGER
);
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY, dev TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL, closed_ms INTEGER
);
"""


def test_an_older_gateway_db_is_upgraded_in_place(tmp_path) -> None:
    path = tmp_path / "gateway.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    # d1 stored 1, 4, 6, 10 (so 2..3, 5, 7..9 missing); the old store kept two spans, one
    # partly filled; a closed span from history goes away
    for seq in (1, 4, 6, 10):
        old.execute(
            "INSERT INTO events (eid, dev, seq, typ, t_ms, received_ms, raw) "
            "VALUES (?, 'd1', ?, 'scan', 1, 1, x'00')",
            (seq.to_bytes(4, "big"), seq),
        )
    old.execute("INSERT INTO devices (dev, contiguous, highest) VALUES ('d1', 1, 10)")
    old.execute("INSERT INTO gaps (dev, lo, hi, opened_ms) VALUES ('d1', 2, 5, 100)")
    old.execute("INSERT INTO gaps (dev, lo, hi, opened_ms) VALUES ('d1', 7, 9, 200)")
    old.execute("INSERT INTO gaps (dev, lo, hi, opened_ms, closed_ms) VALUES ('d9', 1, 1, 1, 2)")
    old.commit()
    old.close()

    for _ in range(2):  # opening again changes nothing
        store = Store(path)
        try:
            assert ranges_of(store, "d1") == [(2, 3), (5, 5), (7, 9)]
            (info,) = store.devices()
            assert (info.open_gaps, info.missing, info.contiguous) == (3, 6, 1)
            tables = {r[0] for r in store._db().execute("SELECT name FROM sqlite_master")}
            assert "gaps" not in tables and "quarantine" in tables
        finally:
            store.close()
    store = Store(path)
    try:  # and it carries on: the late 2, 3 move the ack to 4
        store.commit_batch([event("d1", 3), event("d1", 2)])
        assert store.ack_for("d1") == 4 and ranges_of(store, "d1") == [(5, 5), (7, 9)]
    finally:
        store.close()
