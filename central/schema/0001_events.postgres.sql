-- Events, partitioned by day of event time (t, Unix ms, UTC days). Partitions are created on
-- demand by the store (events_YYYYMMDD). A partitioned table's unique keys must include the
-- partition key, so idempotency by eid lives in the small event_ids table instead.
CREATE TABLE event_ids (
    eid bytea PRIMARY KEY,
    t bigint NOT NULL
);
CREATE INDEX event_ids_t ON event_ids (t);

CREATE TABLE events (
    eid bytea NOT NULL,
    typ text NOT NULL,
    dev text NOT NULL,
    site text NOT NULL,
    lane text,
    seq bigint NOT NULL,
    t bigint NOT NULL,
    received_at bigint NOT NULL,
    gateway text NOT NULL,
    verdict text,
    reason text,
    ref bytea,
    sub bytea,
    kid bytea,
    kind text,
    tlv bigint,
    clock text NOT NULL,
    dec_us integer,
    ver_us integer,
    extra jsonb,
    raw bytea NOT NULL
) PARTITION BY RANGE (t);
CREATE INDEX events_sub_t ON events (sub, t);
CREATE INDEX events_site_t ON events (site, t);
CREATE INDEX events_dev_seq ON events (dev, seq);
CREATE INDEX events_typ_t ON events (typ, t);
