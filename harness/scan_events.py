"""A unit's scan event, signed with the key file from its provisioned bundle: what a test sends
in a real unit's name (a stolen login, a relay) without running the unit itself."""

import time
from pathlib import Path

from protocol.clock import ClockState
from protocol.events import Event, new_event_id, sign_event
from provisioning.keys import load_key_file


def signed_scan(key_file: Path, dev: str, site: str, seq: int, *, ep: int | None = None) -> bytes:
    """A passing scan at lane-1, synced clock, now; `ep` (the unit's outbox epoch) is what
    makes the gateway ack it."""
    event = Event(
        ep=ep,
        eid=new_event_id(),
        typ="scan",
        dev=dev,
        site=site,
        seq=seq,
        t_ms=int(time.time() * 1000),
        clock=ClockState.SYNCED.value,
        verdict="pass",
        reason="ok",
        lane="lane-1",
    )
    return sign_event(event, load_key_file(key_file))
