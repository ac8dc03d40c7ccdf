"""A real PostgreSQL database for tests: one uniquely named database per session, dropped at
the end. Starts the local cluster if it is down; fails loudly (never skips) if it cannot."""

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ADMIN_URL = os.environ.get("CHOT_TEST_PG", "postgresql://chot_test@127.0.0.1:5432/postgres")


def _reachable() -> bool:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def _start_cluster() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) or ["15"]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    for _ in range(30):
        if _reachable():
            return
        time.sleep(0.5)


def admin_url() -> str:
    """The server's admin URL, starting the cluster when needed."""
    if not _reachable():
        _start_cluster()
    if not _reachable():
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} and could not be started")
    return ADMIN_URL


def create_database(prefix: str = "chot_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database on the real server, dropped when the session ends."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def reset_schema(url: str) -> None:
    """Empty the database between tests (much faster than a new database each time)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
