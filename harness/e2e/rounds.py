"""One round of scanning across the site's units, with the checks every e2e test ends on.

A round types `n` prepared passes into each unit at a steady pace; the test does its fault
while the round runs. Unit `d`'s `i`-th text of the round must become its event
`base[d] + i + 1`: units number their decisions in the order people present passes, so after
the round the central store must hold, per unit, exactly seq 1..N (N = the unit's committed
sequence, read from its outbox), each once, with the verdict and reason expected for the text
fed at that position.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.e2e.device_proc import DeviceProc
from harness.e2e.passes import Scan, pass_ref_of
from harness.e2e.site import E2ESite
from harness.polling import wait_until


@dataclass
class ScanPool:
    """Prepared passes per unit (made before the units start, so revocations are installed);
    rounds take from the front."""

    scans: list[list[Scan]]
    taken: list[int] = field(default_factory=list)

    def take(self, n: int) -> list[list[Scan]]:
        if not self.taken:
            self.taken = [0] * len(self.scans)
        out = []
        for d, scans in enumerate(self.scans):
            start = self.taken[d]
            assert start + n <= len(scans), "scan pool exhausted: make a bigger pool"
            out.append(scans[start : start + n])
            self.taken[d] = start + n
        return out


@dataclass
class Round:
    site: E2ESite
    scans: list[list[Scan]]  # per unit
    rate: float | None
    base: dict[str, int] = field(default_factory=dict)

    def start(self) -> "Round":
        for dev, scans in zip(self.site.devices, self.scans, strict=True):
            self.base[dev.id] = self.site.device_seq(dev)
            dev.feed([s.text for s in scans], self.rate)
        return self

    def decided(self, dev: DeviceProc) -> int:
        """Decisions this unit committed in this round so far."""
        return self.site.device_seq(dev) - self.base[dev.id]

    def resume(self, dev: DeviceProc) -> None:
        """After a unit restart: type what it has not committed yet, from where it stopped."""
        done = self.decided(dev)
        dev.feed([s.text for s in self.scans[dev.index][done:]], self.rate)

    def assert_deciding(self, devices: list[DeviceProc], seconds: float = 1.5) -> None:
        """Scanning goes on during the fault: each unit commits new decisions."""
        before = {d.id: self.decided(d) for d in devices}
        time.sleep(seconds)
        after = {d.id: self.decided(d) for d in devices}
        stuck = [d for d in before if after[d] <= before[d] and after[d] < self.n]
        assert not stuck, f"units stopped deciding during the fault: {stuck} ({before} {after})"

    @property
    def n(self) -> int:
        return len(self.scans[0])

    def finish(
        self,
        timeout: float = 60.0,
        expect: Callable[[Scan, dict], None] | None = None,
    ) -> dict[str, list[dict]]:
        """Wait until every unit decided its whole round and the centre holds it all, then
        check exactly-once, order and verdicts. Returns this round's central rows per unit."""
        site = self.site
        for dev in site.devices:
            dev.join_feed(timeout)
        wait_until(
            lambda: all(self.decided(d) >= self.n for d in site.devices),
            timeout,
            message="every unit to decide its round",
        )
        for dev in site.devices:
            assert self.decided(dev) == self.n, f"{dev.id}: {self.decided(dev)} != {self.n}"
        site.wait_at_centre(timeout)
        by_dev = site.check_exactly_once()
        out = {}
        for dev, scans in zip(site.devices, self.scans, strict=True):
            rows = by_dev[dev.id][self.base[dev.id] :]
            assert len(rows) == len(scans)
            for scan, row in zip(scans, rows, strict=True):
                ref = pass_ref_of(scan.text)
                got_ref = None if row["ref"] is None else bytes(row["ref"])
                assert got_ref == ref, f"{dev.id} seq {row['seq']}: not the pass fed there"
                if expect is None:
                    assert (row["verdict"], row["reason"]) == (scan.verdict, scan.reason), (
                        f"{dev.id} seq {row['seq']} ({scan.category}): {row['verdict']}/"
                        f"{row['reason']}, expected {scan.verdict}/{scan.reason}"
                    )
                else:
                    expect(scan, row)
            out[dev.id] = rows
        return out
