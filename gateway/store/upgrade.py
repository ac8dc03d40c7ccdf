"""Opening a gateway.db written by an older gateway: schema.sql creates what is missing
(every statement is IF NOT EXISTS) and this adds the rest, idempotently, in one transaction,
so a gateway that is upgraded in place keeps its events, acks and counters.

- devices' gap columns (gap_ranges, gap_missing, never_arrived);
- the old `gaps` table (one row per skip, "closed" only once the whole span arrived) becomes
  exact missing ranges in `seq_gaps`: each open row's span minus the seqs already stored;
- outbox epochs (issue #13): `devices.ep`, a `seq_gaps` keyed (dev, ep, lo) (rebuilt from the
  one keyed (dev, lo), its ranges in epoch 0), and each device's position and gap totals as
  its epoch-0 row in `epochs` (what it stored before epochs had no `ep`).
"""

import sqlite3

from gateway.store.connection import rows_in

DEVICE_COLUMNS = {
    "gap_ranges": "INTEGER NOT NULL DEFAULT 0",
    "gap_missing": "INTEGER NOT NULL DEFAULT 0",
    "never_arrived": "INTEGER NOT NULL DEFAULT 0",
    "ep": "INTEGER",
}


def upgrade(db: sqlite3.Connection) -> None:
    """Bring an open store up to this version's schema (a no-op on a current one)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
        for name, decl in DEVICE_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE devices ADD COLUMN {name} {decl}")
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='gaps'")
        if old.fetchone():
            _convert_gaps(db)
        _add_epochs(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _convert_gaps(db: sqlite3.Connection) -> None:
    """Old open spans -> the exact ranges still missing; then the per-device totals."""
    spans = db.execute(
        "SELECT dev, lo, hi, opened_ms FROM gaps WHERE closed_ms IS NULL ORDER BY dev, lo"
    ).fetchall()
    for dev, lo, hi, opened_ms in spans:
        stored = [
            seq
            for (seq,) in db.execute(
                "SELECT DISTINCT seq FROM events WHERE dev=? AND seq BETWEEN ? AND ? ORDER BY seq",
                (dev, lo, hi),
            )
        ]
        start = lo
        for seq in [*stored, hi + 1]:  # each stored seq ends a missing run
            if seq > start:
                db.execute(
                    "INSERT OR IGNORE INTO seq_gaps (dev, ep, lo, hi, opened_ms) VALUES (?,0,?,?,?)",
                    (dev, start, seq - 1, opened_ms),
                )
            start = seq + 1
    db.execute("DROP TABLE gaps")
    devices = sorted({dev for dev, *_ in spans})
    totals = {
        dev: (n, missing)
        for dev, n, missing in rows_in(
            db,
            "SELECT dev, COUNT(*), SUM(hi - lo + 1) FROM seq_gaps WHERE dev IN ({}) GROUP BY dev",
            devices,
        )
    }
    db.executemany(
        "UPDATE devices SET gap_ranges=?, gap_missing=? WHERE dev=?",
        [(n, missing, dev) for dev, (n, missing) in totals.items()],
    )


def _add_epochs(db: sqlite3.Connection) -> None:
    """A store from before epochs: seq_gaps gains `ep` (its ranges are epoch 0's) and each
    device's position becomes its epoch-0 row. A no-op once done (devices.ep is set)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(seq_gaps)")}
    if "ep" not in columns:
        db.execute("ALTER TABLE seq_gaps RENAME TO seq_gaps_before_epochs")
        db.execute(
            "CREATE TABLE seq_gaps (dev TEXT NOT NULL, ep INTEGER NOT NULL DEFAULT 0, "
            "lo INTEGER NOT NULL, hi INTEGER NOT NULL, opened_ms INTEGER NOT NULL, "
            "PRIMARY KEY (dev, ep, lo)) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO seq_gaps (dev, ep, lo, hi, opened_ms) "
            "SELECT dev, 0, lo, hi, opened_ms FROM seq_gaps_before_epochs"
        )
        db.execute("DROP TABLE seq_gaps_before_epochs")
        db.execute("CREATE INDEX IF NOT EXISTS seq_gaps_opened ON seq_gaps (opened_ms)")
    db.execute(
        "INSERT OR IGNORE INTO epochs (dev, ep, contiguous, highest, last_event_ms, "
        "gap_ranges, gap_missing, never_arrived) "
        "SELECT dev, 0, contiguous, highest, last_event_ms, gap_ranges, gap_missing, "
        "never_arrived FROM devices WHERE ep IS NULL AND (contiguous > 0 OR highest > 0)"
    )
    db.execute("UPDATE devices SET ep = 0 WHERE ep IS NULL AND (contiguous > 0 OR highest > 0)")
