"""A hostile unit's gaps do not flood the log (issue #13, item 9): 7,500 gaps (seq 1, 3, 5,
...) through the real store write one warning for the device, then one summary line per
minute; the exact figures stay in the store."""

import logging
from pathlib import Path

import pytest

from gateway.store import Store, sequence
from gateway.store.gap_log import GapWarnings
from tests.support.store_rows import event


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gap_lines(caplog: pytest.LogCaptureFixture, dev: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and f"device={dev}" in r.getMessage()
    ]


def test_7500_gaps_through_the_store_log_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    warnings = GapWarnings(sequence.log, clock=clock)
    monkeypatch.setattr(sequence, "GAP_WARNINGS", warnings)
    store = Store(tmp_path / "gateway.db")
    odd = list(range(1, 15_000, 2))  # 7,500 events, each one past a gap but the first
    caplog.set_level(logging.INFO, logger="gateway")
    for i in range(0, len(odd), 500):
        store.commit_batch([event("hostile", s) for s in odd[i : i + 500]])
    store.commit_batch([event("honest", 1), event("honest", 3)])
    lines = gap_lines(caplog, "hostile")
    assert len(lines) == 1 and lines[0].endswith("missing=2..2"), lines
    # another device's gap is its own first one: logged at once
    assert len(gap_lines(caplog, "honest")) == 1
    # a minute later, maintenance writes the one summary of the rest
    clock.now += 61
    caplog.clear()
    warnings.flush_due()
    (summary,) = gap_lines(caplog, "hostile")
    assert "7498 more gaps, 7498 seqs missing in 4..14998" in summary, summary
    # the store still has every figure exactly
    totals = store._db().execute("SELECT SUM(gap_ranges), SUM(gap_missing) FROM devices").fetchone()
    assert totals == (7_499 + 1, 7_499 + 1)
    store.close()


def test_one_summary_per_device_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = logging.getLogger("test.gaps")
    warnings = GapWarnings(log, interval_s=60, clock=clock)
    caplog.set_level(logging.WARNING, logger="test.gaps")
    for _minute in range(3):
        for i in range(100):
            warnings.opened("a", 10 * i + 1, 10 * i + 2, ep=7)
            clock.now += 0.5  # 100 gaps over 50 s
        clock.now += 15  # the minute is over
    warnings.flush_due()
    messages = [r.getMessage() for r in caplog.records]
    firsts = [m for m in messages if m.startswith("sequence gap device=a ep=7")]
    summaries = [m for m in messages if m.startswith("sequence gaps device=a:")]
    assert len(firsts) == 3 and len(summaries) == 3, messages
    assert all("99 more gaps, 198 seqs missing in 11..992" in s for s in summaries), summaries
    # nothing counted, nothing to summarise
    caplog.clear()
    clock.now += 120
    warnings.flush_due()
    assert caplog.records == []
