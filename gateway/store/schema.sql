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
    heartbeat    TEXT,                         -- last health JSON, as the device sent it
    heartbeat_ms INTEGER
);
CREATE TABLE IF NOT EXISTS gaps (
    id        INTEGER PRIMARY KEY,
    dev       TEXT NOT NULL,
    lo        INTEGER NOT NULL,
    hi        INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    closed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS gaps_open ON gaps (dev, closed_ms);
CREATE TABLE IF NOT EXISTS rejects (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic_dev   TEXT,
    eid         BLOB,
    reason      TEXT NOT NULL,
    detail      TEXT
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
