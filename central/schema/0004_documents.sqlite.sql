-- Signed documents ops publishes once for every site (`chot provision publish`); gateways
-- fetch newer versions. scope is '_all' (trust, revocation and DCC trust lists) or a site id
-- (its registry and unit configs). One row per (scope, name): the newest version only.
CREATE TABLE documents (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    typ TEXT NOT NULL,
    version INTEGER NOT NULL,
    raw BLOB NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);
