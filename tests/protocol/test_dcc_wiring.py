"""A scanner unit's DCC wiring (device/app.py, device/config.py): the DCC trust list seeded from
the bundle file and replaced by a newer one arriving as a `dcc-trust` document, and the DCC
site rules from [policy.dcc] with the signed config's `policy.dcc` over them key by key."""

import datetime as dt
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from device.app import DeviceApp
from device.clock_source import ClockSource
from device.config import ConfigError, load_config
from device.gpio.simulated import SimulatedBackend
from harness import dcc_pki
from harness.config_files import edit_toml
from harness.device_config import write_device
from harness.pki import Pki
from protocol.clock import ClockState
from protocol.dcc import ALG_PS256
from protocol.dcc_trust import sign_dcc_trust_list
from protocol.documents import sign_document
from protocol.reasons import Reason, Verdict
from protocol.trust import CONFIG_TYPE

DAY = 86400
PSK = b"w" * 32


@pytest.fixture(scope="module")
def signers() -> dict[str, dcc_pki.Signer]:
    ca = dcc_pki.DccCa()
    now = Pki().now
    validity = {"not_before": now - 300 * DAY, "not_after": now + 300 * DAY}
    return {
        "es": dcc_pki.make_signer(ca, **validity),
        "ps": dcc_pki.make_signer(ca, ALG_PS256, **validity),
    }


def dcc_list(pki: Pki, version: int, *signers: dcc_pki.Signer) -> bytes:
    return sign_dcc_trust_list(
        [s.der for s in signers],
        pseudonym_key=PSK,
        version=version,
        issued_at=pki.now - 60,
        expires_at=pki.now + 30 * DAY,
        root_key=pki.root,
    )


def day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def vaccination(pki: Pki, signer: dcc_pki.Signer, ci: str, *, dn: int = 2) -> str:
    hcert = dcc_pki.vaccination(ci=ci, dn=dn, dt=day(pki.now - 60 * DAY))
    return dcc_pki.make_dcc(signer, hcert, iat=pki.now - 30 * DAY, exp=pki.now + 300 * DAY)


def lab_test(pki: Pki, signer: dcc_pki.Signer, ci: str, hours_ago: int) -> str:
    sampled = dt.datetime.fromtimestamp(pki.now - hours_ago * 3600, dt.UTC)
    hcert = dcc_pki.lab_test(ci=ci, sc=sampled.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return dcc_pki.make_dcc(signer, hcert, iat=pki.now - 3600, exp=pki.now + 300 * DAY)


def make_app(tmp_path: Path, pki: Pki, **sections) -> DeviceApp:
    config = write_device(tmp_path, pki)
    if sections:
        edit_toml(tmp_path / "device.toml", **sections)
        config = load_config(tmp_path / "device.toml")
    clock = ClockSource(probe=lambda: ClockState.SYNCED, wall=lambda: float(pki.now))
    return DeviceApp(config, backend=SimulatedBackend(), clock=clock, connect=False)


def test_bundle_file_seeds_the_list_and_a_newer_document_replaces_it(tmp_path, signers):
    pki = Pki()
    (tmp_path / "dcc-trust.cose").write_bytes(dcc_list(pki, 1, signers["es"]))
    app = make_app(tmp_path, pki, trust={"dcc_trust_list_file": "dcc-trust.cose"})
    try:
        assert app.decider.dcc_trust is not None and app.decider.dcc_trust.version == 1
        es_pass = vaccination(pki, signers["es"], "URN:UVCI:01:VN:WIRE0001#A")
        ps_pass = vaccination(pki, signers["ps"], "URN:UVCI:01:VN:WIRE0002#B")
        assert app.decider.decide(es_pass).reason is Reason.OK
        assert app.decider.decide(ps_pass).reason is Reason.UNKNOWN_KID

        app.on_document("dcc-trust", dcc_list(pki, 2, signers["es"], signers["ps"]))
        assert app.decider.dcc_trust.version == 2
        assert app.decider.decide(
            vaccination(pki, signers["ps"], "URN:UVCI:01:VN:W3#C")
        ).reason is (Reason.OK)
        assert (tmp_path / "state" / "dcc-trust.cose").is_file()  # kept for a restart
        # a rollback to version 1 is refused and the decider keeps version 2
        app.on_document("dcc-trust", dcc_list(pki, 1, signers["es"]))
        assert app.decider.dcc_trust.version == 2
        # a list signed by another root never reaches the decider
        other = Pki(root=SigningKey.generate())
        app.on_document("dcc-trust", dcc_list(other, 3, signers["es"]))
        assert app.decider.dcc_trust.version == 2 and app.refused["dcc-trust"]
    finally:
        app.close()

    # after a restart the unit holds version 2 from its state folder, not the bundle's 1
    again = make_app(tmp_path, pki, trust={"dcc_trust_list_file": "dcc-trust.cose"})
    try:
        assert again.decider.dcc_trust.version == 2
    finally:
        again.close()


def test_policy_dcc_from_the_file_and_the_signed_config_over_it(tmp_path, signers):
    pki = Pki()
    (tmp_path / "dcc-trust.cose").write_bytes(dcc_list(pki, 1, signers["es"]))
    app = make_app(
        tmp_path,
        pki,
        trust={"dcc_trust_list_file": "dcc-trust.cose"},
        policy={
            "debounce_s": 0,
            "dcc": {"kinds": ["vaccination", "test"], "test_max_age_h": 24},
        },
    )
    try:
        rules = app.decider.policy.dcc
        assert rules.kinds == {"vaccination", "test"} and rules.test_max_age_h == 24
        assert app.decider.decide(lab_test(pki, signers["es"], "URN:UVCI:T1#1", 30)).reason is (
            Reason.TEST_TOO_OLD
        )
        assert app.decider.decide(lab_test(pki, signers["es"], "URN:UVCI:T2#2", 20)).reason is (
            Reason.OK
        )
        half = vaccination(pki, signers["es"], "URN:UVCI:V1#3", dn=1)
        assert app.decider.decide(half).reason is Reason.VACCINATION_INCOMPLETE

        # the signed config overrides only the keys it names; test_max_age_h stays the file's
        body = {"device": "hn01-lane1", "policy": {"dcc": {"require_complete_course": False}}}
        config = sign_document(CONFIG_TYPE, 1, pki.now - 60, pki.now + DAY, body, pki.root)
        app.on_document("config", config)
        rules = app.decider.policy.dcc
        assert rules.require_complete_course is False
        assert rules.test_max_age_h == 24 and rules.kinds == {"vaccination", "test"}
        decision = app.decider.decide(vaccination(pki, signers["es"], "URN:UVCI:V2#4", dn=1))
        assert decision.reason is Reason.OK and decision.verdict is Verdict.PASS
    finally:
        app.close()


def test_policy_dcc_in_the_file_is_checked(tmp_path):
    write_device(tmp_path, Pki())
    edit_toml(tmp_path / "device.toml", policy={"dcc": {"kinds": ["declaration"]}})
    with pytest.raises(ConfigError, match="kinds"):
        load_config(tmp_path / "device.toml")
    edit_toml(tmp_path / "device.toml", policy={"dcc": {"test_max_hours": 5}})
    with pytest.raises(ConfigError, match="test_max_hours"):
        load_config(tmp_path / "device.toml")
