"""A pass valid longer than its kind allows is refused at verify time, even when a trusted
issuer signed it; the per-issuer limits travel in the signed trust list (`maxv`), and lists
without them get the defaults."""

import pytest

from harness.pki import ISSUER
from protocol.clock import Clock, ClockState
from protocol.documents import sign_document
from protocol.pass_v1 import verify_pass
from protocol.reasons import Reason, Verdict
from protocol.trust import (
    DEFAULT_MAX_VALIDITY_S,
    TRUST_TYPE,
    IssuerKey,
    open_trust_list,
    sign_trust_list,
)
from tests.protocol.conftest import NOW, Pki

HOUR, DAY = 3600, 86400


def pki_with(limits: dict[str, int] | None = None) -> tuple[Pki, bytes]:
    """A PKI whose trust list gives the issuer `limits` (None: an entry without maxv)."""
    pki = Pki(now=NOW, issuer_kinds=("declaration", "vaccination", "test", "recovery"))
    entry = IssuerKey(
        ISSUER,
        bytes(pki.issuer.verify_key),
        pki.issuer_kinds,
        max_validity=tuple(sorted((limits or {}).items())),
    )
    data = sign_trust_list(
        [entry], version=1, issued_at=NOW - DAY, expires_at=NOW + 7 * DAY, root_key=pki.root
    )
    return pki, data


def verdict(pki: Pki, data: bytes, clock: Clock | None = None, **claims):
    trust = open_trust_list(data, pki.keyring)
    return verify_pass(pki.qr(**claims), trust, clock or Clock.synced(NOW))


def test_defaults_and_why() -> None:
    assert DEFAULT_MAX_VALIDITY_S == {
        "declaration": 72 * HOUR,
        "vaccination": 365 * DAY,
        "test": 72 * HOUR,
        "recovery": 180 * DAY,
    }


@pytest.mark.parametrize(
    ("kind", "allowed_s"),
    [("declaration", 72 * HOUR), ("test", 72 * HOUR), ("recovery", 180 * DAY)],
)
def test_a_pass_over_the_default_limit_is_red(kind: str, allowed_s: int) -> None:
    pki, data = pki_with(None)
    iat = NOW - HOUR
    exactly = verdict(pki, data, kind=kind, iat=iat, exp=iat + allowed_s)
    assert (exactly.verdict, exactly.reason) == (Verdict.PASS, Reason.OK)
    over = verdict(pki, data, kind=kind, iat=iat, exp=iat + allowed_s + 1)
    assert (over.verdict, over.reason) == (Verdict.FAIL, Reason.VALIDITY_TOO_LONG)
    assert kind in over.detail


def test_pass_issue_hours_100000_signed_by_a_trusted_issuer_is_refused() -> None:
    pki, data = pki_with(None)
    result = verdict(pki, data, iat=NOW - HOUR, exp=NOW - HOUR + 100_000 * HOUR)
    assert result.reason is Reason.VALIDITY_TOO_LONG


def test_nbf_starts_the_validity() -> None:
    """A pass issued today for a 72 h window starting tomorrow is not over-long."""
    pki, data = pki_with(None)
    nbf = NOW - HOUR
    ok = verdict(pki, data, iat=nbf - DAY, nbf=nbf, exp=nbf + 72 * HOUR)
    assert ok.reason is Reason.OK


def test_limits_in_the_trust_list_override_the_defaults() -> None:
    pki, data = pki_with({"declaration": 24 * HOUR, "vaccination": 30 * DAY})
    iat = NOW - HOUR
    assert verdict(pki, data, iat=iat, exp=iat + 24 * HOUR).reason is Reason.OK
    too_long = verdict(pki, data, iat=iat, exp=iat + 48 * HOUR)  # under the default, over its own
    assert too_long.reason is Reason.VALIDITY_TOO_LONG
    vacc = verdict(pki, data, kind="vaccination", iat=iat, exp=iat + 31 * DAY)
    assert vacc.reason is Reason.VALIDITY_TOO_LONG
    # a kind it does not name keeps the default
    assert verdict(pki, data, kind="test", iat=iat, exp=iat + 72 * HOUR).reason is Reason.OK


def test_the_limit_is_carried_in_the_signed_list() -> None:
    pki, data = pki_with({"declaration": 24 * HOUR})
    entry = next(iter(open_trust_list(data, pki.keyring).issuers.values()))
    assert entry.max_validity == (("declaration", 24 * HOUR),)
    assert entry.to_cbor()["maxv"] == {"declaration": 24 * HOUR}
    plain_pki, plain_data = pki_with(None)
    plain = next(iter(open_trust_list(plain_data, plain_pki.keyring).issuers.values()))
    assert "maxv" not in plain.to_cbor()  # lists without it stay byte-identical to before


def test_red_under_an_untrusted_clock_too_but_expiry_speaks_first() -> None:
    pki, data = pki_with(None)
    iat = NOW - HOUR
    unknown = Clock(NOW, ClockState.UNKNOWN, None)
    assert verdict(pki, data, unknown, iat=iat, exp=iat + 72 * HOUR).reason is (
        Reason.CLOCK_UNTRUSTED
    )
    over = verdict(pki, data, unknown, iat=iat, exp=iat + 80 * HOUR)
    assert (over.verdict, over.reason) == (Verdict.FAIL, Reason.VALIDITY_TOO_LONG)
    expired = verdict(pki, data, iat=NOW - 200 * HOUR, exp=NOW - 10 * HOUR)
    assert expired.reason is Reason.EXPIRED


@pytest.mark.parametrize(
    "bad",
    [
        {"declaration": 0},
        {"declaration": -5},
        {"declaration": "72h"},
        {"declaration": True},
        {"picnic": 3600},
        {"vaccination": 10 * 365 * DAY},
        ["declaration", 3600],
    ],
)
def test_a_malformed_limit_makes_the_list_unreadable(bad) -> None:
    """A list is signed by the root, but a bad maxv must not pass as "no limit"."""
    pki = Pki(now=NOW)
    item = IssuerKey(ISSUER, bytes(pki.issuer.verify_key)).to_cbor()
    item["maxv"] = bad
    data = sign_document(TRUST_TYPE, 1, NOW, NOW + DAY, {"issuers": [item]}, pki.root)
    with pytest.raises(Exception) as exc:
        open_trust_list(data, pki.keyring)
    assert getattr(exc.value, "reason", None) is Reason.BAD_CLAIMS


def test_an_old_list_without_maxv_is_read_and_gets_the_defaults() -> None:
    """A list signed before maxv existed: the same CBOR entry shape, no extra key."""
    pki = Pki(now=NOW)
    item = {"iss": ISSUER, "key": bytes(pki.issuer.verify_key), "kinds": ["declaration"], "nbf": 0}
    data = sign_document(TRUST_TYPE, 1, NOW, NOW + DAY, {"issuers": [item]}, pki.root)
    entry = next(iter(open_trust_list(data, pki.keyring).issuers.values()))
    assert entry.max_validity_s("declaration") == 72 * HOUR
