"""The gateway's own signed events: manual entries and per-lane load summaries.

Both are protocol Events signed with the gateway key (dev = gateway id, seq per gateway,
reserved in the store), stored in the same table as scans and forwarded the same way, so the
central store treats them like any other signed fact.

Manual entry: staff checked a paper declaration and the ID card by hand, and either admitted
the person (verdict pass, reason ok) or turned them away (verdict fail, reason = why, one of
MANUAL_REFUSALS). The signed event carries the category, the outcome and the operator's name; the last four ID characters (doc4), if typed,
stay ONLY in the gateway store (`manual_entries`) for local audit and never leave it.
"""

import logging
import time

from nacl.signing import SigningKey

from gateway.store import Accepted, Store
from protocol.clock import ClockState
from protocol.events import Event, new_event_id, sign_event

log = logging.getLogger(__name__)

MANUAL_CATEGORIES = ("paper_declaration", "exempt", "other")
MANUAL_OUTCOMES = ("admitted", "turned_away")
# why a person was turned away at the desk: the manual event's reason (reports count them)
MANUAL_REFUSALS = ("no_declaration", "id_mismatch", "symptoms", "refused_other")


class GatewaySigner:
    def __init__(self, store: Store, key: SigningKey, gateway_id: str, site: str) -> None:
        self.store = store
        self.key = key
        self.gateway_id = gateway_id
        self.site = site

    def _commit(self, event: Event) -> Event:
        raw = sign_event(event, self.key)
        self.store.commit_batch([Accepted.of(event, raw)])
        return event

    def _event(self, typ: str, **fields) -> Event:
        return Event(
            eid=new_event_id(),
            typ=typ,
            dev=self.gateway_id,
            site=self.site,
            seq=self.store.next_own_seq(),
            t_ms=int(time.time() * 1000),
            clock=ClockState.SYNCED.value,
            **fields,
        )

    def record_manual(
        self,
        category: str,
        operator: str,
        *,
        lane: str | None = None,
        doc4: str | None = None,
        outcome: str = "admitted",
        refusal: str | None = None,
    ) -> Event:
        """Sign and store one manual entry: admitted after a check by hand (verdict pass,
        reason ok) or turned away (verdict fail, reason = `refusal`); doc4 goes to the local
        table only."""
        if category not in MANUAL_CATEGORIES:
            raise ValueError(f"category must be one of {MANUAL_CATEGORIES}")
        if outcome not in MANUAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {MANUAL_OUTCOMES}")
        if (outcome == "turned_away") != (refusal is not None) or (
            refusal is not None and refusal not in MANUAL_REFUSALS
        ):
            raise ValueError(f"a person turned away needs a reason, one of {MANUAL_REFUSALS}")
        operator = operator.strip()
        if not operator or len(operator) > 64:
            raise ValueError("operator must be 1-64 characters")
        if doc4 is not None and (len(doc4) > 4 or not doc4.isalnum()):
            raise ValueError("doc4 is at most 4 letters or digits")
        event = self._event(
            "manual",
            verdict="pass" if outcome == "admitted" else "fail",
            reason=refusal or "ok",
            lane=lane,
            extra={"category": category, "operator": operator, "outcome": outcome},
        )
        self._commit(event)
        self.store.add_manual_entry(event.eid, event.t_ms, lane, category, operator, doc4)
        self.store.add_audit(
            operator,
            "manual_entry",
            f"{outcome} {category} {refusal or ''} lane={lane} eid={event.eid_hex}",
        )
        log.info(
            "manual entry eid=%s %s category=%s lane=%s", event.eid_hex, outcome, category, lane
        )
        return event

    def record_load(self, capacities: dict[str, int], window_s: int = 60) -> Event:
        """Sign and store a load summary: per lane scans, rate, capacity and queue estimate."""
        load = self.store.lane_load(capacities, window_s)
        lanes = {
            lane: {
                "scans": int(v["scans"]),
                "per_minute": round(v["per_minute"]),
                "capacity": int(v["capacity"]),
                "queue": round(v["queue_estimate"]),
            }
            for lane, v in load.items()
        }
        event = self._event("load", extra={"window_s": int(window_s), "lanes": lanes})
        return self._commit(event)
