"""Fixtures for the whole-system tests: one provisioned site per module, real processes.

Every fixture kills what it started in its finally block (process groups, tmpfs mount), also
when a test fails half-way through a fault.
"""

from collections.abc import Iterator

import pytest

from harness.e2e.passes import make_scans
from harness.e2e.rounds import ScanPool
from harness.e2e.site import E2ESite

FAULT_ROUNDS = 8  # rounds the fault tests may take from the pool
ROUND = 240  # scans per unit per fault round


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2ESite, ScanPool]]:
    """A running site for the fault tests: SQLite central store, unit 4 behind a cuttable
    proxy, the gateway's state on a small tmpfs so its disk can be filled."""
    site = E2ESite(tmp_path_factory.mktemp("faults"), gateway_tmpfs_mb=64, proxied=[3])
    try:
        pool = ScanPool(make_scans(site.site, [FAULT_ROUNDS * ROUND] * 4, now=site.now))
        site.start()
        yield site, pool
    finally:
        site.close()


@pytest.fixture(scope="module")
def security_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2ESite, ScanPool]]:
    site = E2ESite(tmp_path_factory.mktemp("security"))
    try:
        pool = ScanPool(make_scans(site.site, [200] * 4, now=site.now))
        site.start()
        yield site, pool
    finally:
        site.close()
