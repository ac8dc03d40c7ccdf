"""10,000 scans through the whole chain into the real PostgreSQL central store.

4 unit processes each read 2,500 distinct passes (valid, expired, forged, revoked, not a chot
pass) from a keyboard-wedge pipe as fast as they take them. Every decision must reach the
central store exactly once, in its unit's order, with the right verdict and reason; then every
process stops cleanly on SIGTERM.
"""

from collections import Counter
from collections.abc import Iterator

import pytest

from harness.e2e.passes import make_scans
from harness.e2e.rounds import Round
from harness.e2e.site import E2ESite
from tests.support.postgres import create_database, drop_database

PER_UNIT = 2_500


@pytest.fixture
def pg_site(tmp_path) -> Iterator[E2ESite]:
    url = create_database("chot_e2e")
    site = E2ESite(tmp_path / "site", central_store=url)
    try:
        yield site
    finally:
        site.close()
        drop_database(url)


def test_ten_thousand_scans_reach_postgres_exactly_once(pg_site: E2ESite) -> None:
    site = pg_site
    scans = make_scans(site.site, [PER_UNIT] * 4, now=site.now)
    site.start()
    rnd = Round(site, scans, rate=None).start()  # as fast as the units read
    rows = rnd.finish(timeout=150)
    assert sum(len(r) for r in rows.values()) == 10_000
    verdicts = Counter(r["verdict"] for unit in rows.values() for r in unit)
    assert verdicts == Counter(s.verdict for unit in scans for s in unit)
    # a clean stop: every process exits 0 on SIGTERM
    assert [d.stop() for d in site.devices] == [0, 0, 0, 0]
    for name in ("gateway", "central", "broker"):
        service = site.services[name]
        service.stop()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit reports it
        clean = (0, -15) if name == "central" else (0,)
        assert service.proc.returncode in clean, f"{name} exited {service.proc.returncode}"
    assert "Finished server process" in site.services["central"].log_path.read_text()
    assert "Traceback" not in site.services["gateway"].log_path.read_text()
