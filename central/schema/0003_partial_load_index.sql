-- The (typ, t) index cost every stored scan an index insert, but only the `load` query
-- filters on typ, and load events are a few per gateway per minute among thousands of scans.
-- A partial index holds just those rows (and serves the query's "latest per gateway").
DROP INDEX events_typ_t;
CREATE INDEX events_load_dev_t ON events (dev, t) WHERE typ = 'load';
