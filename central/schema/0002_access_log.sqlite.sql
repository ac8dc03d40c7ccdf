-- Who ran which tracing query, when: access to tracing is restricted and logged.
CREATE TABLE access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    operator TEXT NOT NULL,
    via TEXT NOT NULL,
    query TEXT NOT NULL,
    params TEXT NOT NULL,
    row_count INTEGER NOT NULL
);
CREATE INDEX access_log_at ON access_log (at);
