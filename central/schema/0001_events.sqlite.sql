-- Events in one table (SQLite has no partitions; retention deletes by day of t instead).
-- t and received_at are Unix milliseconds, UTC, as in PostgreSQL.
CREATE TABLE events (
    eid BLOB PRIMARY KEY,
    typ TEXT NOT NULL,
    dev TEXT NOT NULL,
    site TEXT NOT NULL,
    lane TEXT,
    seq INTEGER NOT NULL,
    t INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    gateway TEXT NOT NULL,
    verdict TEXT,
    reason TEXT,
    ref BLOB,
    sub BLOB,
    kid BLOB,
    kind TEXT,
    tlv INTEGER,
    clock TEXT NOT NULL,
    dec_us INTEGER,
    ver_us INTEGER,
    extra TEXT,
    raw BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_sub_t ON events (sub, t);
CREATE INDEX events_site_t ON events (site, t);
CREATE INDEX events_dev_seq ON events (dev, seq);
CREATE INDEX events_typ_t ON events (typ, t);
