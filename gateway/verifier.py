"""Event verification for the gateway, and the verifier process that runs it.

Signature checks and CBOR parsing are about half of the gateway's CPU per event. Done in a
separate process they run in parallel with paho's network thread and the SQLite commit
instead of competing for one GIL. This module is what that process imports, so it stays lean
(no paho, no pydantic, no web stack): each worker's memory is mostly the interpreter.
"""

import os
import threading
import time

from gateway.store import Accepted
from protocol.events import open_event
from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry


def verify_event(payload: bytes, topic_dev: str, site: str, registry: Registry) -> Accepted:
    """Check one signed event from a device topic; raises ProtocolError with the reason."""

    verified = open_event(payload, registry.signer_keys(site=site, role="device"))
    ev = verified.event
    if ev.dev != topic_dev or ev.site != site:
        raise ProtocolError(Reason.TOPIC_MISMATCH, f"event of {ev.dev}@{ev.site} on {topic_dev}")
    signer = registry.signers[ev.dev]
    return Accepted(
        eid=ev.eid,
        dev=ev.dev,
        seq=ev.seq,
        typ=ev.typ,
        t_ms=ev.t_ms,
        raw=verified.raw,
        verdict=ev.verdict,
        reason=ev.reason,
        lane=ev.lane or signer.lane,
        kind=ev.kind,
        clock=ev.clock,
    )


# --- in the verifier process ----------------------------------------------------------------
# The worker gets the registry snapshot the writer thread chose (sent again only when it
# changes, or to a new worker) and returns plain tuples; the writer rebuilds the Accepted
# records around the payload bytes it already holds.

_worker_registry: list = [-1, None]  # [version, Registry] cached in the verifier process


def verify_in_worker(
    site: str, version: int, registry: Registry | None, events: list[tuple[str, bytes]]
) -> list[tuple]:
    """In the verifier process: per event, Accepted fields minus raw, or (reason, detail)."""
    if registry is not None:
        _worker_registry[:] = [version, registry]
    elif _worker_registry[0] != version:
        raise RuntimeError("verifier process has no registry of this version")
    registry = _worker_registry[1]
    out: list[tuple] = []
    for dev, payload in events:
        try:
            a = verify_event(payload, dev, site, registry)
            out.append(
                (a.eid, a.dev, a.seq, a.typ, a.t_ms, a.verdict, a.reason, a.lane, a.kind, a.clock)
            )
        except ProtocolError as exc:
            out.append((exc.reason.value, exc.detail))
        except Exception as exc:  # unexpected: the event is rejected, never accepted
            out.append(("bad_event", type(exc).__name__))
    return out


def worker_ready() -> bool:
    return True


def worker_init(parent_pid: int) -> None:
    """The verifier must not outlive the gateway (kill -9 included): it would hold a
    worker's memory forever, and a restarted gateway starts its own."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
