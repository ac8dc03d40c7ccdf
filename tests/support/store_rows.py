"""Rows for the gateway store's own tests: accepted scan events with fresh eids."""

from itertools import count

from gateway.store import Accepted

_eids = count(1)


def event(dev: str, seq: int) -> Accepted:
    """An accepted scan of `dev` at `seq` (a new eid every call)."""
    return Accepted(
        eid=next(_eids).to_bytes(16, "big"),
        dev=dev,
        seq=seq,
        typ="scan",
        t_ms=1_790_000_000_000,
        raw=b"signed",
        reason="ok",
        lane="lane-1",
    )
