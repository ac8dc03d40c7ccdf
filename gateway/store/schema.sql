-- The gateway store (SQLite, WAL). Applied on every open: every statement is IF NOT EXISTS.
-- Only manual_entries.doc4 is personal data; it never leaves this file.
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- the feed cursor: only ever grows
    eid            BLOB NOT NULL UNIQUE,               -- idempotency key everywhere
    dev            TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    typ            TEXT NOT NULL,
    t_ms           INTEGER NOT NULL,                   -- device time
    received_ms    INTEGER NOT NULL,                   -- gateway time
    verdict        TEXT,
    reason         TEXT,
    lane           TEXT,
    kind           TEXT,
    clock          TEXT,
    raw            BLOB NOT NULL,                      -- signed bytes, forwarded unchanged
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'forwarded', 'rejected')),
    central_reason TEXT,
    central_detail TEXT,
    forwarded_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS events_dev_seq ON events (dev, seq);
CREATE INDEX IF NOT EXISTS events_state ON events (state, id);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
CREATE TABLE IF NOT EXISTS devices (
    dev          TEXT PRIMARY KEY,
    contiguous   INTEGER NOT NULL DEFAULT 0,   -- highest seq with everything below stored
    highest      INTEGER NOT NULL DEFAULT 0,
    lane         TEXT,
    last_event_ms INTEGER,
    status       TEXT,
    status_ms    INTEGER,
    heartbeat    TEXT,                         -- last heartbeat that passed protocol/status.py
    heartbeat_ms INTEGER,
    gap_ranges    INTEGER NOT NULL DEFAULT 0,  -- rows in seq_gaps for this device
    gap_missing   INTEGER NOT NULL DEFAULT 0,  -- seq numbers in them
    never_arrived INTEGER NOT NULL DEFAULT 0,  -- seq numbers aged out of seq_gaps
    ep            INTEGER                      -- current outbox epoch (contiguous/highest)
);
-- Sequence state per device and outbox epoch (store/sequence.py): a re-imaged unit starts a
-- new epoch at seq 1 and each epoch keeps its own accounting. Epoch 0: events without `ep`.
CREATE TABLE IF NOT EXISTS epochs (
    dev           TEXT NOT NULL,
    ep            INTEGER NOT NULL,
    contiguous    INTEGER NOT NULL DEFAULT 0,
    highest       INTEGER NOT NULL DEFAULT 0,
    last_event_ms INTEGER,
    gap_ranges    INTEGER NOT NULL DEFAULT 0,
    gap_missing   INTEGER NOT NULL DEFAULT 0,
    never_arrived INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dev, ep)
) WITHOUT ROWID;
-- Sequence numbers not received yet, as disjoint ranges [lo, hi] per device and epoch. A
-- late arrival splits its range; a range past [store] gap_expiry_hours is counted in
-- never_arrived and deleted. (Stores before ranges had `gaps`, before epochs a seq_gaps
-- keyed (dev, lo); store/upgrade.py converts both on open.)
CREATE TABLE IF NOT EXISTS seq_gaps (
    dev       TEXT NOT NULL,
    ep        INTEGER NOT NULL DEFAULT 0,
    lo        INTEGER NOT NULL,
    hi        INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    PRIMARY KEY (dev, ep, lo)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seq_gaps_opened ON seq_gaps (opened_ms);
CREATE TABLE IF NOT EXISTS rejects (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic_dev   TEXT,
    eid         BLOB,
    reason      TEXT NOT NULL,
    detail      TEXT
);
-- Verified events the store refused to commit (a value SQLite cannot hold, a constraint): set
-- aside with the reason so one event never wedges the commit loop. Acked like a stored event.
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    eid         BLOB NOT NULL UNIQUE,
    dev         TEXT NOT NULL,
    seq         INTEGER,                      -- NULL when SQLite cannot hold it
    reason      TEXT NOT NULL,
    raw         BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS manual_entries (
    eid      BLOB PRIMARY KEY,
    t_ms     INTEGER NOT NULL,
    lane     TEXT,
    category TEXT NOT NULL,
    operator TEXT NOT NULL,
    doc4     TEXT                              -- personal: never forwarded, never logged
);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY,
    t_ms   INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    topic      TEXT PRIMARY KEY,
    typ        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    raw        BLOB NOT NULL,
    adopted_ms INTEGER NOT NULL
);
