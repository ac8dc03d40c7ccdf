"""The end-to-end acknowledgement, v2: signed by the gateway, bound to one outbox epoch.

A unit deletes an event from its outbox only on an ack that (1) is a COSE_Sign1 by the
gateway key it pins (the gateway signers of its site in the signed registry/bundle), (2) names
the unit's own device id and its *current outbox epoch* (a random id chosen when the outbox
is created and carried in every event as `ep`), and (3) names the event's sequence number,
either as `upto` (every seq 1..upto of that epoch is committed) or inside one of `rng`.
A unit applies an ack only to seqs it has sent, so neither a stale ack (the gateway still
remembers a re-imaged unit's old epoch) nor a forged one (published with the gateway's MQTT
login but not its key) can delete anything.

Payload (CBOR map, text keys; see protocol/README.md §4):

    {"v": 2, "typ": "chot-ack", "gw": "hn01-gw", "dev": "hn01-lane1",
     "ep": 4503599627370497, "upto": 4211, "rng": [[4213, 4220]],
     "t_ms": 1700000123456, "sync": true, "hb": 17}

`t_ms` and `sync` are the gateway's clock and whether it is synchronised (NTP); `hb` echoes
the nonce of the unit's newest heartbeat the gateway had seen, so an ack answering a
heartbeat bounds the unit's clock (protocol/clock.py, `gateway_time_bound`).
"""

from dataclasses import dataclass

from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.gateway_signed import GatewaySignedError, open_gateway_signed
from protocol.ids import is_valid_id

ACK_VERSION = 2
ACK_TYPE = "chot-ack"
MAX_ACK_BYTES = 1024
MAX_RANGES = 32  # a batch names at most a few ranges; more are folded into the next ack
MAX_SAFE_INT = 2**53 - 1  # as protocol/events.py: seq and epoch are exact in a double
T_MS_MAX = 4_102_444_800_000  # 2100-01-01


class AckError(GatewaySignedError):
    """An ack the unit must ignore; `reason` is a short stable code (logged and counted)."""


@dataclass(frozen=True)
class SeqRange:
    lo: int
    hi: int


@dataclass(frozen=True)
class Ack:
    """What a gateway says it has committed for one device's epoch, and its clock."""

    gw: str
    dev: str
    ep: int
    upto: int  # every seq 1..upto of epoch `ep` is committed (0: says nothing)
    ranges: tuple[SeqRange, ...] = ()  # further committed seqs, inclusive ranges
    t_ms: int = 0  # the gateway's wall clock when it signed
    sync: bool = False  # the gateway's own clock is synchronised (NTP)
    hb: int | None = None  # nonce of the unit's heartbeat this ack also answers

    def names(self, seq: int) -> bool:
        return 1 <= seq <= self.upto or any(r.lo <= seq <= r.hi for r in self.ranges)

    def highest(self) -> int:
        return max([self.upto, *(r.hi for r in self.ranges)])

    def to_cbor(self) -> dict:
        data: dict = {
            "v": ACK_VERSION,
            "typ": ACK_TYPE,
            "gw": self.gw,
            "dev": self.dev,
            "ep": self.ep,
            "upto": self.upto,
            "t_ms": self.t_ms,
            "sync": self.sync,
        }
        if self.ranges:
            data["rng"] = [[r.lo, r.hi] for r in self.ranges]
        if self.hb is not None:
            data["hb"] = self.hb
        return data


def ranges_of(seqs: set[int] | list[int]) -> tuple[SeqRange, ...]:
    """Sorted seqs -> the fewest inclusive ranges covering exactly them."""
    out: list[SeqRange] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1].hi + 1:
            out[-1] = SeqRange(out[-1].lo, seq)
        else:
            out.append(SeqRange(seq, seq))
    return tuple(out)


def sign_ack(ack: Ack, key: SigningKey) -> bytes:
    """The gateway signs; checked like a received ack so it never sends what units refuse."""
    raw = cose.sign1(cbor.dumps(ack.to_cbor()), key)
    if len(raw) > MAX_ACK_BYTES:
        raise AckError("too_large", f"{len(raw)} bytes")
    _check(ack.to_cbor())
    return raw


def open_ack(data: bytes, gateway_keys: dict[str, bytes], device: str, epoch: int) -> Ack:
    """Verify an ack for `device`'s current `epoch` against the pinned gateway keys (gateway
    id -> Ed25519 public key). Raises AckError: too_large, unsigned (not a COSE_Sign1: the
    v1 JSON ack included), wrong_key, bad_ack, wrong_device, wrong_epoch."""
    ack = open_signed_ack(data, gateway_keys)
    if ack.dev != device:
        raise AckError("wrong_device", ack.dev)
    if ack.ep != epoch:
        raise AckError("wrong_epoch", f"{ack.ep} is not the outbox epoch {epoch}")
    return ack


def open_signed_ack(data: bytes, gateway_keys: dict[str, bytes]) -> Ack:
    """Verify an ack's signature and contract only (a paired gateway reads the other's acks
    this way: which device and epoch it names is then the reader's business). Raises
    AckError: too_large, unsigned, bad_ack, wrong_key."""
    return open_gateway_signed(
        data, gateway_keys, max_bytes=MAX_ACK_BYTES, check=_check, error=AckError
    )


def _int(data: dict, key: str, low: int = 0, high: int = MAX_SAFE_INT) -> int:
    value = data.get(key)
    if type(value) is not int or not low <= value <= high:
        raise AckError("bad_ack", f"{key} must be an integer in [{low}, {high}]")
    return value


def _check(data: object) -> Ack:
    if type(data) is not dict or data.get("v") != ACK_VERSION or data.get("typ") != ACK_TYPE:
        raise AckError("bad_ack", f"not a v{ACK_VERSION} {ACK_TYPE}")
    gw, dev = data.get("gw"), data.get("dev")
    if not (isinstance(gw, str) and is_valid_id(gw) and isinstance(dev, str) and is_valid_id(dev)):
        raise AckError("bad_ack", "bad gw or dev id")
    raw_ranges = data.get("rng", [])
    if type(raw_ranges) is not list or len(raw_ranges) > MAX_RANGES:
        raise AckError("bad_ack", f"rng must be a list of at most {MAX_RANGES} ranges")
    ranges = []
    for item in raw_ranges:
        if type(item) is not list or len(item) != 2:
            raise AckError("bad_ack", "a range is [lo, hi]")
        lo = _int({"lo": item[0]}, "lo", 1)
        hi = _int({"hi": item[1]}, "hi", lo)
        ranges.append(SeqRange(lo, hi))
    sync = data.get("sync")
    if type(sync) is not bool:
        raise AckError("bad_ack", "sync must be true or false")
    hb = None if data.get("hb") is None else _int(data, "hb")
    return Ack(
        gw=gw,
        dev=dev,
        ep=_int(data, "ep", 1),
        upto=_int(data, "upto"),
        ranges=tuple(ranges),
        t_ms=_int(data, "t_ms", 0, T_MS_MAX),
        sync=sync,
        hb=hb,
    )
