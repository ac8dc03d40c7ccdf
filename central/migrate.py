"""One schema migration mechanism for both backends.

Migrations are numbered scripts in `central/schema/`: `NNNN_name.sql` for both dialects, or
`NNNN_name.postgresql.sql` / `NNNN_name.sqlite.sql` where the SQL differs. Applied versions
are recorded in `schema_version`; each script runs in one transaction (both databases have
transactional DDL), so a failed migration leaves nothing half done.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from central.store import Store

log = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).parent / "schema"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(postgres|sqlite))?\.sql$")
_DIALECT_SUFFIX = {"postgresql": "postgres", "sqlite": "sqlite"}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations_for(dialect: str, schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    """Scripts for a dialect in version order; a dialect-specific file beats the generic one."""
    suffix = _DIALECT_SUFFIX[dialect]
    chosen: dict[int, tuple[bool, Migration]] = {}
    for path in sorted(schema_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match or match[3] not in (None, suffix):
            continue
        version, specific = int(match[1]), match[3] is not None
        if version not in chosen or specific:
            chosen[version] = (specific, Migration(version, match[2], path))
    return [m for _, (_, m) in sorted(chosen.items())]


def migrate(store: Store) -> list[int]:
    """Apply every pending migration; return the versions applied now (empty: up to date)."""
    applied_now = []
    with store.migration_lock():
        done = store.applied_versions()
        for migration in migrations_for(store.dialect):
            if migration.version in done:
                continue
            store.apply_migration(migration.version, migration.name, migration.path.read_text())
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    return applied_now
