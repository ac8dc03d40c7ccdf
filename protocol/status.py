"""The small JSON payloads beside the signed events: availability, heartbeat, end-to-end ack.

They are not signed (the broker's ACL says who may publish where), so a receiver checks every
field's type and bounds and the payload's size before anything is stored or shown:

    …/dev/{device}/status, …/gw/{gateway}/status   retained, last will
        {"state": "online"|"offline"|"stopped", "t": <unix s, 0 in a last will>}
    …/dev/{device}/heartbeat                       QoS 0, every heartbeat_s
        {"t", "state", "seq", "outbox_depth", "outbox_full", "unrecorded", "fps",
         "decoder_ms", "clock", "trust_version", ["cpu_temp"], ["camera": "ok"|"missing"],
         ["ep", "hb": outbox epoch and a nonce the signed ack echoes]}
    …/dev/{device}/ack                             QoS 1, gateway -> device
        v2: a COSE_Sign1 by the gateway key (protocol/ack.py); the v1 JSON below is
        refused by units since v2 and kept here only for old readers:
        {"seq": <highest contiguous seq the gateway committed>}

Unknown keys are ignored when parsing (a newer device may say more), never when encoding.
"""

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from protocol.clock import ClockState

MAX_STATUS_BYTES = 128
MAX_HEARTBEAT_BYTES = 1024
MAX_ACK_BYTES = 64
MAX_INT = 2**63 - 1  # SQLite's INTEGER, and what a sequence number can reach
MAX_SAFE_ID = 2**53 - 1  # epochs and nonces: random, exact in a double

AVAILABILITY_STATES = ("online", "offline", "stopped")
CAMERA_STATES = ("ok", "missing")
_DEVICE_STATE = re.compile(r"^[a-z][a-z_]{0,31}$")  # idle, offline, no_camera, outbox_full…


class PayloadError(ValueError):
    """A status, heartbeat or ack payload that breaks the contract; the message says how."""


@dataclass(frozen=True)
class Availability:
    """The retained status of a device or gateway. `t` is 0 in a last will (set at connect
    time, it would only mislead), else the publisher's Unix time."""

    state: str
    t: int


@dataclass(frozen=True)
class Heartbeat:
    """A scanner's health: enough for an operator to see a unit that cannot scan, record or
    deliver. `t` is the device's clock, trusted only as far as `clock` says."""

    t: int
    state: str  # the device's indicator state
    seq: int  # last sequence number written to the outbox
    outbox_depth: int  # events not yet acknowledged by the gateway
    outbox_full: bool
    unrecorded: int  # decisions the outbox could not store (disk full)
    fps: float
    decoder_ms: float
    clock: str  # protocol.clock.ClockState value
    trust_version: int | None
    cpu_temp: float | None = None
    camera: str | None = None  # "ok" or "missing" (absent from older units)
    ep: int | None = None  # the outbox epoch: announces a fresh one to the gateway
    hb: int | None = None  # a nonce the gateway echoes in its signed ack (clock bound)


# --- checks ---------------------------------------------------------------------------------


def _int(data: dict[str, Any], key: str, low: int = 0, high: int = MAX_INT) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PayloadError(f"{key} must be an integer in [{low}, {high}]")
    return value


def _float(data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise PayloadError(f"{key} must be a number in [{low}, {high}]")
    return float(value)


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise PayloadError(f"{key} must be true or false")
    return value


def _object(payload: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(payload) > limit:
        raise PayloadError(f"{what} is {len(payload)} bytes, more than {limit}")
    try:
        data = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"{what} must be a JSON object")
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _encode(data: dict[str, Any], limit: int, what: str) -> bytes:
    raw = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    if len(raw) > limit:
        raise PayloadError(f"{what} is {len(raw)} bytes, more than {limit}")
    return raw


# --- availability ---------------------------------------------------------------------------


def _check_availability(data: dict[str, Any]) -> Availability:
    state = data.get("state")
    if state not in AVAILABILITY_STATES:
        raise PayloadError(f"state must be one of {AVAILABILITY_STATES}")
    return Availability(state=state, t=_int(data, "t"))


def encode_status(state: str, t: int) -> bytes:
    """The retained availability payload; `t=0` for the last will."""
    status = _check_availability({"state": state, "t": t})
    return _encode(asdict(status), MAX_STATUS_BYTES, "status")


def parse_status(payload: bytes) -> Availability:
    return _check_availability(_object(payload, MAX_STATUS_BYTES, "status"))


# --- heartbeat ------------------------------------------------------------------------------


def _check_heartbeat(data: dict[str, Any]) -> Heartbeat:
    state = data.get("state")
    if not isinstance(state, str) or not _DEVICE_STATE.match(state):
        raise PayloadError("state must be 1-32 of a-z and _")
    clock = data.get("clock")
    if clock not in tuple(ClockState):
        raise PayloadError(f"clock must be one of {[c.value for c in ClockState]}")
    trust_version = None if data.get("trust_version") is None else _int(data, "trust_version")
    cpu_temp = None if data.get("cpu_temp") is None else _float(data, "cpu_temp", -60, 200)
    camera = data.get("camera")
    if camera is not None and camera not in CAMERA_STATES:
        raise PayloadError(f"camera must be one of {CAMERA_STATES}")
    return Heartbeat(
        t=_int(data, "t"),
        state=state,
        seq=_int(data, "seq"),
        outbox_depth=_int(data, "outbox_depth"),
        outbox_full=_bool(data, "outbox_full"),
        unrecorded=_int(data, "unrecorded"),
        fps=_float(data, "fps", 0, 1000),
        decoder_ms=_float(data, "decoder_ms", 0, 600_000),
        clock=str(clock),
        trust_version=trust_version,
        cpu_temp=cpu_temp,
        camera=camera,
        ep=None if data.get("ep") is None else _int(data, "ep", 1, MAX_SAFE_ID),
        hb=None if data.get("hb") is None else _int(data, "hb", 1, MAX_SAFE_ID),
    )


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    """Checked like a received one, so a device never sends what a gateway would refuse."""
    data = asdict(_check_heartbeat(asdict(heartbeat)))
    for optional in ("cpu_temp", "camera", "ep", "hb"):
        if data[optional] is None:
            del data[optional]
    return _encode(data, MAX_HEARTBEAT_BYTES, "heartbeat")


def parse_heartbeat(payload: bytes) -> Heartbeat:
    return _check_heartbeat(_object(payload, MAX_HEARTBEAT_BYTES, "heartbeat"))


# --- end-to-end ack -------------------------------------------------------------------------


def encode_ack(seq: int) -> bytes:
    return _encode({"seq": _int({"seq": seq}, "seq")}, MAX_ACK_BYTES, "ack")


def parse_ack(payload: bytes) -> int:
    """The acknowledged sequence number: every event up to it is committed at the gateway."""
    return _int(_object(payload, MAX_ACK_BYTES, "ack"), "seq")
