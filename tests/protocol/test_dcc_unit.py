"""A unit deciding EU DCCs exactly as chot passes: the signed DCC trust list through the device
document store (persisted, rollback refused, stale -> amber), the site's DCC rules from the
signed config, debounce and duplicate_recent, and the signed scan event a gateway accepts:
kind and the keyed pseudonym, never the name, birth date or certificate identifier."""

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from device.decide import Decider, Policy, signature_checked
from device.documents_store import DocumentStore, parse_config_policy
from device.outbox import Outbox
from gateway.distribution import Distributor
from harness import dcc_pki as pki
from harness.dcc_pki import DAY, NOW
from protocol.clock import Clock
from protocol.dcc import ALG_PS256, pseudonym
from protocol.dcc_trust import DCC_TRUST_TYPE, dcc_trust_topic, sign_dcc_trust_list
from protocol.documents import sign_document
from protocol.events import open_event
from protocol.reasons import ProtocolError, Reason, Verdict
from protocol.trust import CONFIG_TYPE, root_keyring

DEVICE = "hn01-lane1"
PSK = b"q" * 32


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def world():
    ca = pki.DccCa()
    return {
        "root": SigningKey.generate(),
        "es": pki.make_signer(ca),
        "ps": pki.make_signer(ca, ALG_PS256),
    }


def signed_list(world, version: int, signers=None, expires_at: int = NOW + 7 * DAY) -> bytes:
    return sign_dcc_trust_list(
        [s.der for s in signers or (world["es"], world["ps"])],
        pseudonym_key=PSK,
        version=version,
        issued_at=NOW - DAY,
        expires_at=expires_at,
        root_key=world["root"],
    )


def store(world, tmp_path: Path) -> DocumentStore:
    return DocumentStore(
        tmp_path / "state", root_keyring([bytes(world["root"].verify_key)]), DEVICE
    )


def decider_for(trust, policy: Policy | None = None, now: int = NOW) -> tuple[Decider, FakeTime]:
    mono = FakeTime()
    decider = Decider(
        None,
        None,
        policy or Policy.make(debounce_s=5.0, duplicate_window_s=1800.0),
        lambda: Clock.synced(now),
        monotonic=mono,
        dcc_trust=trust,
    )
    return decider, mono


def test_store_adopts_persists_and_refuses_rollback(world, tmp_path):
    docs = store(world, tmp_path)
    assert docs.offer("dcc-trust", signed_list(world, 2)).adopted
    with pytest.raises(ProtocolError) as err:
        docs.offer("dcc-trust", signed_list(world, 1))
    assert err.value.reason is Reason.ROLLBACK
    with pytest.raises(ProtocolError) as err:  # a chot trust list on the DCC topic
        docs.offer("dcc-trust", sign_document("chot-trust", 9, NOW, NOW + 1, {}, world["root"]))
    assert err.value.reason is Reason.WRONG_TYPE
    reopened = store(world, tmp_path)  # after a power cut: the newest accepted list
    trust = reopened.dcc_trust()
    assert trust is not None and trust.version == 2 and trust.pseudonym_key == PSK


def test_unit_decides_a_dcc_like_a_chot_pass(world, tmp_path):
    docs = store(world, tmp_path)
    docs.offer("dcc-trust", signed_list(world, 1))
    decider, mono = decider_for(docs.dcc_trust())
    hcert = pki.vaccination()
    text = pki.make_dcc(world["ps"], hcert)
    first = decider.decide(text)
    assert (first.verdict, first.reason, first.publish) == (Verdict.PASS, Reason.OK, True)
    assert first.trust_version == 1 and signature_checked(first)
    mono.t += 1  # still held in front of the camera
    held = decider.decide(text)
    assert held.repeat and not held.publish and held.verdict is Verdict.PASS
    mono.t += 60  # shown again a minute later: one certificate, one entry
    again = decider.decide(text)
    assert (again.verdict, again.reason, again.publish) == (
        Verdict.FAIL,
        Reason.DUPLICATE_RECENT,
        True,
    )
    assert first.result.claims.sub == pseudonym(PSK, hcert["v"][0]["ci"])


def test_scan_event_carries_kind_and_pseudonym_only(world, tmp_path):
    decider, _ = decider_for(store_with_list(world, tmp_path).dcc_trust())
    hcert = pki.lab_test()
    d = decider.decide(pki.make_dcc(world["es"], hcert))
    claims = d.result.claims if signature_checked(d) else None
    fields = {
        "typ": "scan",
        "t_ms": NOW * 1000,
        "clock": d.clock.state.value,
        "verdict": d.verdict.value,
        "reason": d.reason.value,
        "lane": "lane-1",
        "ref": d.pass_ref,
        "sub": claims.sub if claims else None,
        "kid": d.result.kid,
        "kind": claims.kind if claims else None,
        "tlv": d.trust_version,
    }
    key = SigningKey.generate()
    outbox = Outbox(tmp_path / "outbox.db", DEVICE, "HN-01", key)
    _, signed = outbox.append(fields)
    event = open_event(signed, {DEVICE: bytes(key.verify_key)}.get).event  # as the gateway
    assert (event.kind, event.verdict, event.sub) == ("test", "pass", fields["sub"])
    assert event.kid == world["es"].kid
    for secret in (hcert["t"][0]["ci"], "NGUYEN", "1985-04-12"):
        assert secret.encode() not in signed and secret.encode() not in bytes(event.sub)


def store_with_list(world, tmp_path):
    docs = store(world, tmp_path)
    docs.offer("dcc-trust", signed_list(world, 1))
    return docs


def test_site_rules_from_the_signed_config(world, tmp_path):
    body = {"device": DEVICE, "policy": {"dcc": {"kinds": ["vaccination"], "test_max_age_h": 24}}}
    config = sign_document(CONFIG_TYPE, 1, NOW, NOW + DAY, body, world["root"])
    docs = store_with_list(world, tmp_path)
    docs.offer("config", config)
    policy = Policy.make(**parse_config_policy(docs.current("config").body))
    decider, _ = decider_for(docs.dcc_trust(), policy)
    assert decider.decide(pki.make_dcc(world["es"], pki.lab_test())).reason is (
        Reason.KIND_NOT_ALLOWED
    )
    assert decider.decide(pki.make_dcc(world["es"])).verdict is Verdict.PASS
    bad = sign_document(
        CONFIG_TYPE,
        2,
        NOW,
        NOW + DAY,
        {"device": DEVICE, "policy": {"dcc": {"x": 1}}},
        world["root"],
    )
    with pytest.raises(ProtocolError) as err:
        docs.offer("config", bad)
    assert err.value.reason is Reason.BAD_CLAIMS


def test_stale_or_missing_list_is_amber_and_publishes_no_pseudonym(world, tmp_path):
    text = pki.make_dcc(world["es"])
    none, _ = decider_for(None)
    d = none.decide(text)
    assert (d.verdict, d.reason) == (Verdict.WARN, Reason.NO_TRUST_LIST)
    assert not signature_checked(d)
    docs = store(world, tmp_path)
    docs.offer("dcc-trust", signed_list(world, 1, expires_at=NOW + DAY))
    stale, _ = decider_for(docs.dcc_trust(), now=NOW + 2 * DAY)
    assert stale.decide(text).reason is Reason.TRUST_STALE


def test_refusals_have_their_own_reasons_on_the_unit(world, tmp_path):
    decider, _ = decider_for(store_with_list(world, tmp_path).dcc_trust())
    cases = {
        pki.make_dcc(world["es"], pki.vaccination(dn=1)): Reason.VACCINATION_INCOMPLETE,
        pki.make_dcc(world["es"], pki.lab_test(tr="260373001")): Reason.TEST_POSITIVE,
        pki.make_dcc(world["es"], pki.recovery(df="2022-04-01")): Reason.RECOVERY_NOT_VALID,
        "HC1:" + "%" * 30: Reason.BAD_BASE45,
    }
    for text, reason in cases.items():
        assert decider.decide(text).reason is reason


def test_gateway_republishes_the_list_on_its_own_retained_topic(world, tmp_path):
    from gateway.store import Store

    published: list[tuple[str, bytes]] = []
    gateway = Distributor(
        Store(tmp_path / "gw.db"),
        "HN-01",
        [bytes(world["root"].verify_key)],
        lambda topic, data: published.append((topic, data)),
    )
    adopted = gateway.offer(signed_list(world, 4))
    assert (adopted.topic, adopted.typ, adopted.version) == (
        dcc_trust_topic("HN-01"),
        DCC_TRUST_TYPE,
        4,
    )
    assert published == [(dcc_trust_topic("HN-01"), signed_list(world, 4))]
    with pytest.raises(ProtocolError) as err:
        gateway.offer(signed_list(world, 3))
    assert err.value.reason is Reason.ROLLBACK
    assert gateway.republish_all() == 1 and published[-1][0] == dcc_trust_topic("HN-01")
