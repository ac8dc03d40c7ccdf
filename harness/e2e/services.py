"""What the one-site and the two-site e2e set-ups both do with their running parts: read a
gateway's store from outside, as a test observer, and kill every process at teardown."""

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from chot.system import Service


def query_gateway_store(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows from a running gateway's SQLite store, opened read-only so the test never takes
    its write lock; [] until the gateway has created the file and its tables."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def kill_services(services: Iterable[Service]) -> None:
    """SIGKILL each running service's whole process group (a service runs in a session of its
    own), so no child outlives the test; one that will not die does not stop the others."""
    for service in services:
        with contextlib.suppress(Exception):
            if service.running:
                assert service.proc is not None
                os.killpg(service.proc.pid, signal.SIGKILL)
                service.proc.wait(5)
