"""Shared fixtures: real brokers and real databases, started per test or per session."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.mosquitto import Broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory: `broker = mosquitto(users=..., acl=..., tls=...)` gives a started broker,
    stopped when the test ends."""
    started: list[Broker] = []

    def start(name: str = "broker", **options) -> Broker:
        broker = Broker(tmp_path / name, **options).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
