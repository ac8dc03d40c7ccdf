"""Ingest one gateway batch: parse, verify every event, store the good ones idempotently.

A bad event never costs the good ones in the same batch: each is checked on its own against
the protocol contract (protocol/events.py bounds every value) and rejected with a stable reason
code; should the database still refuse a row, the batch is bisected down to that row, which is
rejected as `store_refused` while the others are stored. A retried batch stores nothing twice: the eid is the
idempotency key, and the answer lists which eids were new (`stored`) and which the store
already held (`duplicate`) — both mean "confirmed" to the gateway.
Event time is checked against the centre's own clock (`TimeWindow`): PostgreSQL keeps one
partition per UTC day an event names, so a stolen unit's key spreading `t_ms` over 2020-2100
would otherwise create ~29,000 tables. Refused as `out_of_range`, per event: more than
`FUTURE_MS` (1 day) ahead of the centre, or older than `retention_days` when it is configured
(retention would delete it anyway). A refused event stays at the gateway with its reason
(status page, /metrics). And one batch stores the events of at most `MAX_DAYS_PER_BATCH` days
(those nearest the centre's clock): the others are answered `deferred`, which the gateway
keeps pending and sends again, so a quiet site back after weeks offline loses nothing while a
batch never creates more than 32 partitions (with retention configured, at most
retention_days + 2 in all).
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from central.store import EventRow, Store
from protocol import cbor, cose
from protocol.events import Event, open_event
from protocol.reasons import ProtocolError, Reason, Verdict
from protocol.registry import Registry, Signer

log = logging.getLogger(__name__)

MAX_EVENTS = 5000
DAY_MS = 86_400_000
FUTURE_MS = DAY_MS  # a unit's clock ahead of the centre's by more than this is not believed
# Distinct UTC days one batch may name (the nearest the centre's clock are kept): a gateway's
# batch of a few hundred events after an outage spans a few days, a hostile one thousands.
MAX_DAYS_PER_BATCH = 32
# Keys that would carry personal data: they must never reach the central store.
PERSONAL_KEYS = frozenset({"name", "doc4", "dob"})


class BatchError(Exception):
    """The whole batch is unusable (HTTP status + reason); nothing was stored."""

    def __init__(self, status: int, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class TimeWindow:
    """Event times the centre believes, around its own clock `now_ms`."""

    now_ms: int
    max_age_days: int | None = None  # the store's retention, when configured

    def refusal(self, t_ms: int) -> str | None:
        """Why an event time is not believed; None when it is."""
        if t_ms > self.now_ms + FUTURE_MS:
            return f"t_ms is {(t_ms - self.now_ms) // DAY_MS} days ahead of the centre's clock"
        if self.max_age_days is not None and t_ms < self.now_ms - self.max_age_days * DAY_MS:
            return f"t_ms is older than the retention of {self.max_age_days} days"
        return None


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Valid, but not stored in this batch (more days than one batch may name): send again
    deferred: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "deferred": self.deferred,
        }


def parse_batch(body: bytes, gateway_id: str) -> list[Any]:
    """The CBOR envelope {"gateway": id, "events": [bytes, ...]} -> the list of items."""
    try:
        data = cbor.loads_strict(body)
    except ProtocolError as exc:
        raise BatchError(
            400, Reason.BAD_CBOR, f"body is not one CBOR item ({exc.detail})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise BatchError(400, Reason.BAD_EVENT, 'body must be a map with an "events" array')
    if data.get("gateway") != gateway_id:
        raise BatchError(400, Reason.TOPIC_MISMATCH, "body gateway differs from X-Chot-Gateway")
    if len(data["events"]) > MAX_EVENTS:
        raise BatchError(413, Reason.TOO_LARGE, f"more than {MAX_EVENTS} events in one batch")
    return data["events"]


def ingest_batch(
    items: list[Any],
    gateway: Signer,
    registry: Registry,
    store: Store,
    now_ms: int,
    window: TimeWindow | None = None,
) -> IngestResult:
    """Verify each item against the registry, store the valid ones, report every outcome.
    `window`: event times believed (the service passes its clock's; None: any, for replays
    of recorded data in tests and benches)."""
    result = IngestResult()
    rows: list[EventRow] = []
    seen: set[bytes] = set()
    in_batch_duplicates: list[str] = []
    for index, item in enumerate(items):
        try:
            event = verify_item(item, gateway, registry)
            row = to_row(event, bytes(item), gateway.id, now_ms)
            implausible = window.refusal(row.t) if window else None
            if implausible:
                raise ProtocolError(Reason.OUT_OF_RANGE, implausible)
        except ProtocolError as exc:
            eid = _peek_eid(item)
            result.rejected.append(
                {"index": index, "eid": eid, "reason": exc.reason.value, "detail": exc.detail}
            )
            log.warning(
                "gateway %s: rejected event %d eid=%s: %s", gateway.id, index, eid, exc.reason
            )
            continue
        if event.eid in seen:  # the same event twice in one batch: the first one counts
            in_batch_duplicates.append(event.eid.hex())
            continue
        seen.add(event.eid)
        rows.append(row)
    rows = _keep_nearest_days(rows, now_ms, result, gateway.id)
    inserted, refused = insert_isolating(store, rows)
    for row in rows:
        if row.eid in refused:
            detail = refused[row.eid]
            index = _index_of(items, row.raw)
            result.rejected.append(
                {
                    "index": index,
                    "eid": row.eid.hex(),
                    "reason": Reason.STORE_REFUSED.value,
                    "detail": detail,
                }
            )
            log.warning(
                "gateway %s: store refused event %d eid=%s: %s",
                gateway.id,
                index,
                row.eid.hex(),
                detail,
            )
        else:
            (result.stored if row.eid in inserted else result.duplicate).append(row.eid.hex())
    result.duplicate.extend(in_batch_duplicates)
    log.info(
        "gateway %s: batch of %d: %d stored, %d duplicate, %d rejected",
        gateway.id,
        len(items),
        len(result.stored),
        len(result.duplicate),
        len(result.rejected),
    )
    return result


def _keep_nearest_days(
    rows: list[EventRow], now_ms: int, result: IngestResult, gateway_id: str
) -> list[EventRow]:
    """The rows of the `MAX_DAYS_PER_BATCH` days nearest the centre's clock; the others are
    deferred (each day can cost a partition; the gateway sends them again in a later batch)."""
    days = {row.t // DAY_MS for row in rows}
    if len(days) <= MAX_DAYS_PER_BATCH:
        return rows
    today = now_ms // DAY_MS
    kept = set(sorted(days, key=lambda day: (abs(day - today), day))[:MAX_DAYS_PER_BATCH])
    out = []
    for row in rows:
        if row.t // DAY_MS in kept:
            out.append(row)
        else:
            result.deferred.append(row.eid.hex())
    log.warning(
        "gateway %s: batch names %d days; %d events of the farthest deferred",
        gateway_id,
        len(days),
        len(rows) - len(out),
    )
    return out


def insert_isolating(store: Store, rows: list[EventRow]) -> tuple[set[bytes], dict[bytes, str]]:
    """Insert rows; when the database refuses the batch for the data of some row, bisect
    until the refused rows are alone, so one bad row never fails the others. Returns
    (eids inserted, {eid: why} refused). An outage (anything that is not a refusal of the
    data) propagates: nothing is rejected for it, the gateway sends the batch again."""
    if not rows:
        return set(), {}
    try:
        return store.insert_events(rows), {}
    except Exception as exc:
        if not is_row_refusal(exc):
            raise
        if len(rows) == 1:
            return set(), {rows[0].eid: f"{type(exc).__name__}: {exc}"[:200]}
    half = len(rows) // 2
    inserted, refused = insert_isolating(store, rows[:half])
    more_inserted, more_refused = insert_isolating(store, rows[half:])
    return inserted | more_inserted, refused | more_refused


# PEP 249 names these in every DB-API driver (sqlite3, psycopg): the database refused the
# values, not the request. OverflowError and ValueError are the driver or the store refusing a
# value before it reaches the database (SQLite's int past 2^63, a partition date past 9999).
_REFUSAL_NAMES = frozenset({"DataError", "IntegrityError"})


def is_row_refusal(exc: BaseException) -> bool:
    """True when `exc` says the data of some row is unstorable, not that the store is down."""
    if isinstance(exc, OverflowError | ValueError):
        return True
    return any(cls.__name__ in _REFUSAL_NAMES for cls in type(exc).__mro__)


def _index_of(items: list[Any], raw: bytes) -> int:
    return next(i for i, item in enumerate(items) if item == raw)


def verify_item(item: Any, gateway: Signer, registry: Registry) -> Event:
    """Signature, signer status, site and role checks for one event; raises ProtocolError."""
    if not isinstance(item, bytes):
        raise ProtocolError(Reason.BAD_EVENT, "each event must be a CBOR byte string")

    event = open_event(item, registry.signer_keys()).event
    signer = registry.signers[event.dev]
    if event.site != signer.site:
        raise ProtocolError(
            Reason.TOPIC_MISMATCH, f"event site {event.site} but {event.dev} is at {signer.site}"
        )
    if event.site != gateway.site:
        raise ProtocolError(
            Reason.TOPIC_MISMATCH, f"event site {event.site} but gateway site is {gateway.site}"
        )
    expected_role = "device" if event.typ == "scan" else "gateway"
    if signer.role != expected_role:
        raise ProtocolError(Reason.BAD_EVENT, f"{event.typ} events are signed by a {expected_role}")
    if event.typ == "scan" and event.verdict not in tuple(Verdict):
        raise ProtocolError(Reason.BAD_EVENT, "scan event without a valid verdict")
    if _has_personal_keys(event.extra):
        raise ProtocolError(Reason.BAD_EVENT, "extra carries personal data keys")
    return event


def to_row(event: Event, raw: bytes, gateway_id: str, now_ms: int) -> EventRow:
    """The stored form; raises ProtocolError(bad_event) for an `extra` JSON cannot hold."""
    extra = None
    if event.extra:  # most events carry none: skip the encoder on the hot path
        try:
            extra = json.dumps(event.extra, sort_keys=True, default=_json_default)
        except (TypeError, ValueError):
            raise ProtocolError(Reason.BAD_EVENT, "extra cannot be stored as JSON") from None
    return EventRow(
        eid=event.eid,
        typ=event.typ,
        dev=event.dev,
        site=event.site,
        lane=event.lane,
        seq=event.seq,
        t=event.t_ms,
        received_at=now_ms,
        gateway=gateway_id,
        verdict=event.verdict,
        reason=event.reason,
        ref=event.ref,
        sub=event.sub,
        kid=event.kid,
        kind=event.kind,
        tlv=event.tlv,
        clock=event.clock,
        dec_us=event.dec_us,
        ver_us=event.ver_us,
        extra=extra,
        raw=raw,
        ep=event.ep,
    )


def _has_personal_keys(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(k in PERSONAL_KEYS or _has_personal_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_personal_keys(v) for v in value)
    return False


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _peek_eid(item: Any) -> str | None:
    """Best effort: the eid of a rejected event, so the gateway knows which one failed."""
    try:
        payload = cbor.loads_strict(cose.parse_sign1(item).payload)
        eid = payload.get("eid")
    except (ProtocolError, AttributeError, TypeError):
        return None
    return eid.hex() if isinstance(eid, bytes) and len(eid) == 16 else None
