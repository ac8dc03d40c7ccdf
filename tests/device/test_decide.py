"""decide.py and clock_source.py as pure functions: fake monotonic time, real keys and lists."""

import pytest
from nacl.signing import SigningKey

from device.clock_source import ClockSource, system_clock_state
from device.decide import Decider, Policy, signature_checked
from protocol.clock import Clock, ClockState
from protocol.pass_v1 import decode_pass
from protocol.reasons import Reason, Verdict
from protocol.trust import open_revocation_list, open_trust_list, root_keyring, sign_revocation_list
from tests.support.device_pipeline import Pki


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def trust(pki):
    return open_trust_list(pki.trust_list(), root_keyring([bytes(pki.root.verify_key)]))


def make(trust, pki, **policy) -> tuple[Decider, FakeTime]:
    mono = FakeTime()
    options = {"debounce_s": 5.0, "duplicate_window_s": 1800.0, "resignal_s": 2.0} | policy
    decider = Decider(
        trust, None, Policy.make(**options), lambda: Clock.synced(pki.now), monotonic=mono
    )
    return decider, mono


def test_first_sighting_passes_and_publishes(pki, trust):
    decider, _ = make(trust, pki)
    text = pki.make_pass()
    d = decider.decide(text)
    assert (d.verdict, d.reason, d.publish, d.signal, d.repeat) == (
        Verdict.PASS,
        Reason.OK,
        True,
        True,
        False,
    )
    assert d.pass_ref == decode_pass(text).claims.pass_ref
    assert d.trust_version == 1 and signature_checked(d)


def test_held_pass_is_one_decision_with_sliding_debounce(pki, trust):
    decider, mono = make(trust, pki)
    text = pki.make_pass()
    assert decider.decide(text).publish
    published, signals = 0, 0
    for _ in range(200):  # 20 s held at 10 fps: far longer than debounce_s, seen all along
        mono.t += 0.1
        d = decider.decide(text)
        published += d.publish
        signals += d.signal
        assert d.verdict is Verdict.PASS and d.repeat
    assert published == 0
    assert 8 <= signals <= 10  # re-signalled every resignal_s (2 s), not every frame


def test_presented_again_after_debounce_is_duplicate_recent(pki, trust):
    decider, mono = make(trust, pki)
    text = pki.make_pass()
    decider.decide(text)
    mono.t += 6  # gone for longer than debounce_s
    d = decider.decide(text)
    assert (d.verdict, d.reason, d.publish, d.signal) == (
        Verdict.FAIL,
        Reason.DUPLICATE_RECENT,
        True,
        True,
    )
    mono.t += 6
    assert decider.decide(text).reason is Reason.DUPLICATE_RECENT
    mono.t += 1800 - 12 + 1  # window counted from the accepted scan, not from the duplicates
    d = decider.decide(text)
    assert (d.verdict, d.reason, d.publish) == (Verdict.PASS, Reason.OK, True)


def test_failing_pass_again_is_not_a_duplicate(pki, trust):
    decider, mono = make(trust, pki)
    forged = pki.make_pass(key=SigningKey.generate())  # unknown issuer key
    first = decider.decide(forged)
    assert first.reason is Reason.UNKNOWN_KID and not signature_checked(first)
    mono.t += 6
    again = decider.decide(forged)
    assert again.reason is Reason.UNKNOWN_KID and again.publish


def test_undecodable_text_is_debounced_by_hash(pki, trust):
    decider, mono = make(trust, pki)
    d = decider.decide("https://example.com/menu")
    assert (d.verdict, d.reason, d.pass_ref, d.publish) == (
        Verdict.FAIL,
        Reason.NOT_CHOT,
        None,
        True,
    )
    mono.t += 1
    assert not decider.decide("https://example.com/menu").publish
    assert decider.decide("https://example.com/other").publish


def test_policy_kinds_and_revocations(pki, trust):
    decider, _ = make(trust, pki, allowed_kinds=["vaccination"])
    assert decider.decide(pki.make_pass(kind="declaration")).reason is Reason.KIND_NOT_ALLOWED
    assert decider.decide(pki.make_pass(kind="vaccination")).reason is Reason.OK

    text = pki.make_pass()
    revoked = sign_revocation_list(
        pass_refs=[decode_pass(text).claims.pass_ref],
        version=1,
        issued_at=pki.now - 60,
        expires_at=pki.now + 86400,
        root_key=pki.root,
    )
    decider, _ = make(trust, pki)
    decider.set_revocations(
        open_revocation_list(revoked, root_keyring([bytes(pki.root.verify_key)]))
    )
    assert decider.decide(text).reason is Reason.REVOKED


def test_no_trust_list_warns(pki):
    decider, _ = make(None, pki)
    d = decider.decide(pki.make_pass())
    assert (d.verdict, d.reason) == (Verdict.WARN, Reason.NO_TRUST_LIST)
    assert not signature_checked(d)


def test_recent_table_is_bounded_and_evicts_oldest(pki, trust):
    decider, mono = make(trust, pki, max_recent=3)
    texts = [pki.make_pass(i) for i in range(5)]
    for text in texts:
        decider.decide(text)
        mono.t += 10
    assert len(decider) == 3
    assert decider.decide(texts[0]).reason is Reason.OK  # forgotten: evicted
    assert decider.decide(texts[4]).reason is Reason.DUPLICATE_RECENT  # still remembered


def test_entries_expire_after_the_windows(pki, trust):
    decider, mono = make(trust, pki, duplicate_window_s=60)
    decider.decide(pki.make_pass())
    mono.t += 61
    decider.decide(pki.make_pass())
    assert len(decider) == 1


# -- clock ----------------------------------------------------------------------------------


def test_clock_synced_unknown_and_bounded():
    wall, mono = [2_000_000_000.0], FakeTime()
    synced = ClockSource(probe=lambda: ClockState.SYNCED, wall=lambda: wall[0], monotonic=mono)
    assert synced.read() == Clock(2_000_000_000, ClockState.SYNCED, None)

    unsynced = ClockSource(probe=lambda: ClockState.UNKNOWN, wall=lambda: wall[0], monotonic=mono)
    assert unsynced.read().state is ClockState.UNKNOWN
    unsynced.note_document(1_900_000_000)
    reading = unsynced.read()
    assert (reading.state, reading.lower_bound) == (ClockState.BOUNDED, 1_900_000_000)
    mono.t += 100  # the bound advances with monotonic time
    assert unsynced.read().lower_bound == 1_900_000_100


def test_synced_clock_behind_a_signed_document_is_not_trusted(pki, trust):
    mono = FakeTime()
    source = ClockSource(
        probe=lambda: ClockState.SYNCED, wall=lambda: 1_000_000_000, monotonic=mono
    )
    source.note_document(pki.now)  # the trust list was issued long after the clock's "now"
    reading = source.read()
    assert reading.state is ClockState.BOUNDED and not reading.trusted
    decider = Decider(trust, None, Policy(), source.read, monotonic=mono)
    d = decider.decide(pki.make_pass())
    assert (d.verdict, d.reason) == (Verdict.WARN, Reason.CLOCK_UNTRUSTED)


def test_bounded_clock_still_proves_expiry(pki, trust):
    old = pki.make_pass(iat=pki.now - 10 * 86400)  # expired 7 days ago
    source = ClockSource(probe=lambda: ClockState.UNKNOWN)
    source.note_document(pki.now - 60)
    decider = Decider(trust, None, Policy(), source.read)
    assert decider.decide(old).reason is Reason.EXPIRED


def test_clock_state_override_and_probe_caching(monkeypatch):
    monkeypatch.setenv("CHOT_CLOCK_STATE", "bounded")
    assert system_clock_state() is ClockState.BOUNDED
    monkeypatch.delenv("CHOT_CLOCK_STATE")
    assert system_clock_state() in tuple(ClockState)  # kernel or timesyncd answer, or unknown
    calls, mono = [], FakeTime()
    source = ClockSource(
        probe=lambda: calls.append(1) or ClockState.SYNCED, monotonic=mono, probe_interval_s=10
    )
    for _ in range(50):
        source.read()
    mono.t += 11
    source.read()
    assert len(calls) == 2
