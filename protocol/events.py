"""Scan events: what a device (or a gateway) says happened, signed with its own Ed25519 key.

An event is a COSE_Sign1 whose payload is a CBOR map with text keys (see protocol/README.md).
It carries the subject pseudonym and the pass reference, never name, doc4 or dob: the type
below has no field that could hold them.
"""

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.ids import is_valid_id
from protocol.reasons import ProtocolError, Reason

EVENT_VERSION = 1
MAX_EVENT_BYTES = 4096
EVENT_TYPES = ("scan", "manual", "load")


@dataclass(frozen=True)
class Event:
    """One signed fact from a device or gateway. `seq` is per-`dev` (and per outbox epoch `ep`
    when the event carries one), contiguous from 1.

    typ "scan": a decision at a scanner. typ "manual": an operator-checked paper declaration
    entered at the gateway (`extra`: category, operator). typ "load": a gateway's per-lane load
    summary (`extra`: lanes -> counts) so the centre can divert traffic.
    """

    eid: bytes  # 16 random bytes, the idempotency key everywhere downstream
    typ: str
    dev: str
    site: str
    seq: int
    t_ms: int  # device time, Unix milliseconds
    clock: str  # ClockState of the device when it decided
    verdict: str | None = None
    reason: str | None = None
    lane: str | None = None
    ref: bytes | None = None  # pass reference SHA-256(cti)[0:16]
    sub: bytes | None = None  # subject pseudonym
    kid: bytes | None = None  # issuer kid of the pass
    kind: str | None = None
    tlv: int | None = None  # trust-list version used
    dec_us: int | None = None  # decode latency
    ver_us: int | None = None  # verify latency
    extra: Mapping[str, Any] = field(default_factory=dict)
    ep: int | None = None  # the unit's outbox epoch: seq counts from 1 within it (protocol/ack.py)

    @property
    def eid_hex(self) -> str:
        return self.eid.hex()

    def to_cbor(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "extra"}
        data["v"] = EVENT_VERSION
        if self.extra:
            data["extra"] = dict(self.extra)
        return data


def new_event_id() -> bytes:
    return uuid.uuid4().bytes


def sign_event(event: Event, key: SigningKey) -> bytes:
    return cose.sign1(cbor.dumps(event.to_cbor()), key)


_FIELD_TYPES: dict[str, type] = {
    "eid": bytes,
    "typ": str,
    "dev": str,
    "site": str,
    "seq": int,
    "t_ms": int,
    "clock": str,
    "verdict": str,
    "reason": str,
    "lane": str,
    "ref": bytes,
    "sub": bytes,
    "kid": bytes,
    "kind": str,
    "tlv": int,
    "dec_us": int,
    "ver_us": int,
    "extra": dict,
    "ep": int,
}
_REQUIRED = frozenset({"eid", "typ", "dev", "site", "seq", "t_ms", "clock"})

# Bounds of every integer an event may carry (inclusive). A correctly signed event from a
# stolen unit can say anything; these keep every value storable by every store downstream
# (SQLite and PostgreSQL bigint stop at 2^63 - 1, PostgreSQL integer at 2^31 - 1, dates at
# year 9999) and inside what a real unit can produce. See protocol/README.md §3.
MAX_SAFE_INT = 2**53 - 1  # exact in a double: JSON readers and JavaScript keep it intact
T_MS_MIN = 1_577_836_800_000  # 2020-01-01T00:00:00Z: systemd never boots a Pi's clock earlier
T_MS_MAX = 4_102_444_800_000  # 2100-01-01T00:00:00Z: a fixed ceiling, the parser has no "now"
MAX_LATENCY_US = 600_000_000  # 10 minutes: decode / verify latencies beyond are not latencies
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "seq": (0, MAX_SAFE_INT),  # 0 is refused below as bad_event, as ever: seqs start at 1
    "t_ms": (T_MS_MIN, T_MS_MAX),
    "tlv": (0, MAX_SAFE_INT),
    "dec_us": (0, MAX_LATENCY_US),
    "ver_us": (0, MAX_LATENCY_US),
    "ep": (1, MAX_SAFE_INT),  # outbox epoch: a random id, exact in a double like seq
}
MAX_TEXT = 64  # verdict, reason, lane, kind, clock: short codes and names
MAX_EXTRA_DEPTH = 4  # maps and arrays inside `extra` (a load summary nests 3)
MAX_EXTRA_ITEMS = 512  # keys and array elements in all of `extra`
MAX_EXTRA_TEXT = 256  # each key and string inside `extra`


def parse_event_payload(payload: bytes) -> Event:
    """Payload CBOR -> Event with strict types and bounds; problems are `bad_event` (shape,
    type) or `out_of_range` (a value outside the bounds above)."""
    try:
        raw = cbor.loads_strict(payload)
    except ProtocolError:
        raise ProtocolError(Reason.BAD_EVENT, "payload is not CBOR") from None
    if type(raw) is not dict or raw.get("v") != EVENT_VERSION:
        raise ProtocolError(Reason.BAD_EVENT, "event must be a map with v=1")
    # One pass over what the map holds, exact types (`type(x) is int` also refuses bool). This
    # runs for every event at the gateway and again at the centre, so it stays lean: keys we
    # do not know are ignored (a newer minor version may add some), null means absent.
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        typ = _FIELD_TYPES.get(name)
        if typ is None or value is None:
            continue
        if type(value) is not typ or (typ is int and value < 0):
            raise ProtocolError(Reason.BAD_EVENT, f"{name} has the wrong type")
        if typ is int:
            low, high = _INT_BOUNDS[name]
            if not low <= value <= high:
                raise ProtocolError(Reason.OUT_OF_RANGE, f"{name} outside {low}..{high}")
        elif typ is str and (len(value) > MAX_TEXT or not value.isprintable()):
            raise ProtocolError(
                Reason.OUT_OF_RANGE, f"{name} longer than {MAX_TEXT} or unprintable"
            )
        fields[name] = value
    if not fields.keys() >= _REQUIRED:
        missing = sorted(_REQUIRED - fields.keys())
        raise ProtocolError(Reason.BAD_EVENT, f"missing {', '.join(missing)}")
    if len(fields["eid"]) != 16 or fields["typ"] not in EVENT_TYPES or fields["seq"] < 1:
        raise ProtocolError(Reason.BAD_EVENT, "bad eid, typ or seq")
    if not is_valid_id(fields["dev"]) or not is_valid_id(fields["site"]):
        raise ProtocolError(Reason.BAD_EVENT, "bad device or site id")
    for name in ("ref", "sub"):
        if name in fields and len(fields[name]) != 16:
            raise ProtocolError(Reason.BAD_EVENT, f"{name} must be 16 bytes")
    if "kid" in fields and len(fields["kid"]) > MAX_TEXT:
        raise ProtocolError(Reason.OUT_OF_RANGE, f"kid longer than {MAX_TEXT} bytes")
    if fields.get("extra"):
        check_extra(fields["extra"])
    return _event_from_checked(fields)


def check_extra(extra: dict) -> None:
    """`extra` is free-form but bounded: text keys, at most MAX_EXTRA_DEPTH levels and
    MAX_EXTRA_ITEMS entries; leaves are short printable text, safe integers, finite floats,
    booleans or null (what JSON and PostgreSQL jsonb can hold). Raises out_of_range/bad_event."""
    budget = [MAX_EXTRA_ITEMS]

    def walk(value: Any, depth: int) -> None:
        kind = type(value)
        if kind is dict or kind is list:
            if depth > MAX_EXTRA_DEPTH:
                raise ProtocolError(Reason.OUT_OF_RANGE, f"extra nests over {MAX_EXTRA_DEPTH}")
            budget[0] -= len(value)
            if budget[0] < 0:
                raise ProtocolError(Reason.OUT_OF_RANGE, f"extra over {MAX_EXTRA_ITEMS} items")
            items = value.items() if kind is dict else ((None, v) for v in value)
            for key, item in items:
                if kind is dict:
                    if type(key) is not str:
                        raise ProtocolError(Reason.BAD_EVENT, "extra keys must be text")
                    walk(key, depth)
                walk(item, depth + 1)
        elif kind is str:
            if len(value) > MAX_EXTRA_TEXT or not value.isprintable():
                raise ProtocolError(Reason.OUT_OF_RANGE, "extra text too long or unprintable")
        elif kind is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise ProtocolError(Reason.OUT_OF_RANGE, f"extra integer outside +-{MAX_SAFE_INT}")
        elif kind is float:
            if not math.isfinite(value):
                raise ProtocolError(Reason.OUT_OF_RANGE, "extra number is not finite")
        elif value is not None and kind is not bool:
            raise ProtocolError(Reason.BAD_EVENT, f"extra holds a {kind.__name__}")

    walk(extra, 1)


_EVENT_DEFAULTS = {name: None for name in _FIELD_TYPES if name not in _REQUIRED}


def _event_from_checked(fields: dict[str, Any]) -> Event:
    """An Event from fields already type-checked above, without the frozen dataclass's
    __init__ (19 guarded setattrs, about half of this function's cost per event)."""
    values = {**_EVENT_DEFAULTS, **fields}
    if values["extra"] is None:
        values["extra"] = {}
    event = object.__new__(Event)
    object.__setattr__(event, "__dict__", values)
    return event


@dataclass(frozen=True)
class VerifiedEvent:
    event: Event
    raw: bytes  # the signed bytes, forwarded unchanged so the centre can verify them again


def open_event(data: bytes, key_for_device: Callable[[str], bytes | None]) -> VerifiedEvent:
    """Verify a signed event against a device registry lookup (device id -> public key).

    Raises ProtocolError: too_large, bad_cbor, bad_cose, bad_alg, bad_event, unknown_device,
    bad_signature. The signer's kid must be the key registered for the event's own `dev`, so a
    valid device cannot sign events in another device's name.
    """
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_EVENT_BYTES:
        raise ProtocolError(Reason.TOO_LARGE, "event too large or not bytes")
    msg = cose.parse_sign1(bytes(data))
    kid = cose.require_protected_kid(msg)
    event = parse_event_payload(msg.payload)
    public_key = key_for_device(event.dev)
    if public_key is None:
        raise ProtocolError(Reason.UNKNOWN_DEVICE, f"device {event.dev} not registered")
    if kid != cose.kid_for(public_key) or not msg.verify(public_key):
        raise ProtocolError(Reason.BAD_SIGNATURE, f"not signed by device {event.dev}")
    return VerifiedEvent(event, bytes(data))


def registry_lookup(keys: Mapping[str, bytes]) -> Callable[[str], bytes | None]:
    return keys.get
