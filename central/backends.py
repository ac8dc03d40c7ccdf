"""Which store backend a URL names. Kept apart from central/store.py (the interface the
backends import), so the interface never imports a backend back."""

from central.store import Store


def open_store(url: str) -> Store:
    """Backend for a store URL; the schema is not touched (see migrate.migrate)."""
    if url.startswith("sqlite://"):
        from central.store_sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from central.store_postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError("store URL must start with sqlite:/// or postgresql://")
