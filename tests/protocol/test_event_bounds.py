"""The event contract bounds every value: a correctly signed event from a stolen unit cannot
carry a number or a text that some store downstream cannot hold (issue #13, items 1 and 2)."""

from typing import Any

import pytest
from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.events import (
    MAX_EXTRA_DEPTH,
    MAX_EXTRA_ITEMS,
    MAX_LATENCY_US,
    MAX_SAFE_INT,
    T_MS_MAX,
    T_MS_MIN,
    open_event,
)
from protocol.reasons import ProtocolError, Reason

KEY = SigningKey.generate()
KEYS = {"lane1-a": bytes(KEY.verify_key)}
GOOD: dict[str, Any] = {
    "v": 1,
    "typ": "scan",
    "eid": bytes(range(16)),
    "dev": "lane1-a",
    "site": "HN-01",
    "seq": 7,
    "t_ms": 1_700_000_000_000,
    "clock": "synced",
    "verdict": "pass",
    "reason": "ok",
    "lane": "lane-1",
    "ref": bytes(16),
    "sub": bytes(16),
    "kid": bytes(8),
    "kind": "declaration",
    "tlv": 3,
    "dec_us": 400,
    "ver_us": 90,
}


def signed(**changes: Any) -> bytes:
    """A correctly signed event, as a stolen unit's key would sign it."""
    return cose.sign1(cbor.dumps(GOOD | changes), KEY)


def refused(**changes: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        open_event(signed(**changes), KEYS.get)
    return err.value


def test_a_plain_event_passes() -> None:
    assert open_event(signed(), KEYS.get).event.seq == 7


@pytest.mark.parametrize("field", ["seq", "t_ms"])
def test_signed_event_with_2_pow_63_is_refused_with_the_reason(field: str) -> None:
    """The poison of the issue: 2^63 overflows SQLite and PostgreSQL bigint."""
    error = refused(**{field: 2**63})
    assert error.reason is Reason.OUT_OF_RANGE
    assert field in error.detail


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("seq", 1, MAX_SAFE_INT),
        ("t_ms", T_MS_MIN, T_MS_MAX),
        ("tlv", 0, MAX_SAFE_INT),
        ("dec_us", 0, MAX_LATENCY_US),
        ("ver_us", 0, MAX_LATENCY_US),
    ],
)
def test_each_integer_accepts_its_bounds_and_refuses_one_past(
    field: str, low: int, high: int
) -> None:
    assert getattr(open_event(signed(**{field: low}), KEYS.get).event, field) == low
    assert getattr(open_event(signed(**{field: high}), KEYS.get).event, field) == high
    assert refused(**{field: high + 1}).reason is Reason.OUT_OF_RANGE
    assert refused(**{field: 2**64 - 1}).reason is Reason.OUT_OF_RANGE  # CBOR's largest uint
    # past that CBOR needs a bignum tag, which the decoder refuses before any field is read
    assert refused(**{field: 2**64}).reason is Reason.BAD_EVENT


def test_bounds_fit_every_store() -> None:
    """The bounds are chosen so SQLite/PostgreSQL bigint, PostgreSQL integer (latencies) and
    PostgreSQL dates (year 9999) hold every accepted value."""
    assert MAX_SAFE_INT < 2**63 and T_MS_MAX < 2**63 and MAX_LATENCY_US < 2**31
    assert T_MS_MAX < 253_402_300_800_000  # 10000-01-01T00:00:00Z


def test_t_ms_before_2020_and_seq_zero_or_negative() -> None:
    assert refused(t_ms=T_MS_MIN - 1).reason is Reason.OUT_OF_RANGE
    assert refused(t_ms=0).reason is Reason.OUT_OF_RANGE
    assert refused(seq=0).reason is Reason.BAD_EVENT  # seqs start at 1 (unchanged code)
    assert refused(seq=-1).reason is Reason.BAD_EVENT  # an unsigned field
    assert refused(tlv=-(2**63)).reason is Reason.BAD_EVENT


@pytest.mark.parametrize("field", ["verdict", "reason", "lane", "kind", "clock"])
def test_text_fields_are_short_and_printable(field: str) -> None:
    assert refused(**{field: "x" * 65}).reason is Reason.OUT_OF_RANGE
    # a NUL cannot go into a PostgreSQL text column: it would fail the whole batch there
    assert refused(**{field: "lane\x00"}).reason is Reason.OUT_OF_RANGE


def test_kid_is_bounded() -> None:
    assert refused(kid=bytes(65)).reason is Reason.OUT_OF_RANGE


def test_extra_as_the_gateway_writes_it_passes() -> None:
    load = {"window_s": 60, "lanes": {"lane-1": {"scans": 3, "per_minute": 3, "capacity": 12}}}
    event = open_event(signed(typ="load", extra=load), KEYS.get).event
    assert event.extra == load
    manual = {"category": "paper_declaration", "operator": "op-lan", "ratio": 0.5, "ok": True}
    assert open_event(signed(typ="manual", extra=manual), KEYS.get).event.extra == manual


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2**63},
        {"n": -(2**63)},
        {"lanes": {"lane-1": {"queue": MAX_SAFE_INT + 1}}},
        {"list": [1, 2, [3, -(2**64)]]},
        {"nan": float("nan")},
        {"inf": float("-inf")},
        {"text": "a" * 257},
        {"k" * 257: 1},
        {"nul": "a\x00b"},
    ],
)
def test_extra_values_out_of_range(extra: dict) -> None:
    assert refused(extra=extra).reason is Reason.OUT_OF_RANGE


def test_extra_depth_and_size() -> None:
    nested: Any = 1
    for _ in range(MAX_EXTRA_DEPTH):
        nested = {"a": nested}
    assert open_event(signed(extra=nested), KEYS.get).event.extra == nested
    assert refused(extra={"a": nested}).reason is Reason.OUT_OF_RANGE
    wide = {f"k{i}": i for i in range(MAX_EXTRA_ITEMS)}
    assert open_event(signed(extra=wide), KEYS.get).event.extra == wide
    many = {"a": list(range(MAX_EXTRA_ITEMS))}  # 1 key + 512 elements
    assert refused(extra=many).reason is Reason.OUT_OF_RANGE


@pytest.mark.parametrize("extra", [{1: "int key"}, {"b": b"bytes"}])
def test_extra_shapes_json_cannot_hold(extra: dict) -> None:
    assert refused(extra=extra).reason is Reason.BAD_EVENT


def test_every_integer_field_has_a_bound() -> None:
    """A new integer field without a bound would let 2^63 through again."""
    from protocol.events import _FIELD_TYPES, _INT_BOUNDS

    assert {name for name, typ in _FIELD_TYPES.items() if typ is int} <= _INT_BOUNDS.keys()
