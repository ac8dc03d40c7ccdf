"""Site rules for DCCs: type accepted, complete course, test result and age, recovery window,
each refusal with its own reason, and the clock rule (unprovable -> amber, never green)."""

import pytest

from harness import dcc_pki as pki
from harness.dcc_pki import DAY, NOW
from protocol.clock import Clock, ClockState
from protocol.dcc import verify_dcc
from protocol.dcc_policy import DccPolicy
from protocol.dcc_trust import direct_trust
from protocol.reasons import Reason, Verdict


@pytest.fixture(scope="module")
def signer() -> pki.Signer:
    return pki.make_signer(pki.DccCa())


def check(signer, hcert, policy=None, clock=None, **kwargs):
    trust = direct_trust([signer.der])
    text = pki.make_dcc(signer, hcert)
    return verify_dcc(text, trust, clock or Clock.synced(NOW), policy=policy, **kwargs)


def test_site_accepts_only_some_types(signer):
    policy = DccPolicy.from_mapping({"kinds": ["vaccination"]})
    assert check(signer, pki.vaccination(), policy).verdict is Verdict.PASS
    assert check(signer, pki.lab_test(), policy).reason is Reason.KIND_NOT_ALLOWED
    assert check(signer, pki.recovery(), policy).reason is Reason.KIND_NOT_ALLOWED
    # the unit's general allowed_kinds applies to DCCs too
    result = check(signer, pki.lab_test(), allowed_kinds={"declaration", "vaccination"})
    assert result.reason is Reason.KIND_NOT_ALLOWED


def test_incomplete_course(signer):
    assert check(signer, pki.vaccination(dn=1, sd=2)).reason is Reason.VACCINATION_INCOMPLETE
    assert check(signer, pki.vaccination(dn=3, sd=2)).verdict is Verdict.PASS  # booster
    relaxed = DccPolicy(require_complete_course=False)
    assert check(signer, pki.vaccination(dn=1, sd=2), relaxed).verdict is Verdict.PASS


def test_incomplete_course_is_red_even_when_the_clock_is_unsure(signer):
    clock = Clock(NOW, ClockState.UNKNOWN)
    result = check(signer, pki.vaccination(dn=1, sd=2), clock=clock)
    assert result.reason is Reason.VACCINATION_INCOMPLETE


def test_waiting_days_after_the_last_dose(signer):
    policy = DccPolicy(vaccination_min_days=14)
    recent = pki.vaccination(dt="2022-02-20")  # 9 days before NOW
    assert check(signer, recent, policy).reason is Reason.VACCINATION_TOO_RECENT
    assert check(signer, pki.vaccination(dt="2022-02-14"), policy).verdict is Verdict.PASS


def test_other_disease(signer):
    assert check(signer, pki.vaccination(tg="12345")).reason is Reason.WRONG_DISEASE


def test_positive_test(signer):
    assert check(signer, pki.lab_test(tr="260373001")).reason is Reason.TEST_POSITIVE


def test_test_age(signer):
    policy = DccPolicy(test_max_age_h=24)
    assert check(signer, pki.lab_test(sc="2022-02-28T12:00:00Z"), policy).verdict is Verdict.PASS
    old = pki.lab_test(sc="2022-02-27T23:59:59Z")
    assert check(signer, old, policy).reason is Reason.TEST_TOO_OLD
    offset = pki.lab_test(sc="2022-02-28T07:00:00+07:00")  # 00:00Z: exactly 24 h
    assert check(signer, offset, policy).verdict is Verdict.PASS
    future = pki.lab_test(sc="2022-03-01T02:00:00Z")
    assert check(signer, future, policy).reason is Reason.NOT_YET_VALID


def test_test_age_with_a_bounded_clock(signer):
    hcert = pki.lab_test(sc="2022-02-28T12:00:00Z")
    unsure = Clock(NOW, ClockState.BOUNDED, NOW - DAY)
    assert check(signer, hcert, clock=unsure).reason is Reason.CLOCK_UNTRUSTED
    provably_late = Clock(NOW, ClockState.BOUNDED, NOW + 5 * DAY)
    assert check(signer, hcert, clock=provably_late).reason is Reason.TEST_TOO_OLD


def test_recovery_window_df_to_du_inclusive(signer):
    hcert = pki.recovery(df="2022-03-01", du="2022-03-01")
    assert check(signer, hcert).verdict is Verdict.PASS
    late_same_day = Clock.synced(NOW + DAY - 1)
    assert check(signer, hcert, clock=late_same_day).verdict is Verdict.PASS
    assert check(signer, hcert, clock=Clock.synced(NOW + DAY)).reason is Reason.RECOVERY_NOT_VALID
    early = pki.recovery(df="2022-03-05", du="2022-08-01")
    assert check(signer, early).reason is Reason.RECOVERY_NOT_VALID
    inverted = pki.recovery(df="2022-03-05", du="2022-03-01")
    assert check(signer, inverted).reason is Reason.BAD_CLAIMS


@pytest.mark.parametrize(
    "values",
    [
        {"kinds": ["declaration"]},
        {"kinds": "vaccination"},
        {"require_complete_course": 1},
        {"vaccination_min_days": -1},
        {"vaccination_min_days": True},
        {"test_max_age_h": 0},
        {"test_hours": 24},
    ],
)
def test_policy_config_is_strict(values):
    with pytest.raises(ValueError):
        DccPolicy.from_mapping(values)


def test_policy_config_defaults():
    policy = DccPolicy.from_mapping({})
    assert policy == DccPolicy()
    assert policy.kinds == {"vaccination", "test", "recovery"}
    assert DccPolicy.from_mapping({"test_max_age_h": 48}).test_max_age_h == 48.0
