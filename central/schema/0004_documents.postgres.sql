-- Signed documents ops publishes once for every site (`chot provision publish`); gateways
-- fetch newer versions. scope is '_all' (trust, revocation and DCC trust lists) or a site id
-- (its registry and unit configs). One row per (scope, name): the newest version only.
CREATE TABLE documents (
    scope text NOT NULL,
    name text NOT NULL,
    typ text NOT NULL,
    version bigint NOT NULL,
    raw bytea NOT NULL,
    published_at bigint NOT NULL,
    published_by text NOT NULL,
    PRIMARY KEY (scope, name)
);
