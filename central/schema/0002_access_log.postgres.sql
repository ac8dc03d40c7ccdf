-- Who ran which tracing query, when: access to tracing is restricted and logged.
CREATE TABLE access_log (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    operator text NOT NULL,
    via text NOT NULL,
    query text NOT NULL,
    params text NOT NULL,
    row_count integer NOT NULL
);
CREATE INDEX access_log_at ON access_log (at);
