"""Fixtures for the central store: the same tests run on SQLite and on the real PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.backends import open_store
from central.migrate import migrate
from central.store import Store
from tests.central.fixtures import Fleet
from tests.support.postgres import postgres_url, reset_schema

__all__ = ["postgres_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/central.db"
    else:
        url = request.getfixturevalue("postgres_url")
        reset_schema(url)
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        migrate(opened)
        yield opened


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet.create(tmp_path)
