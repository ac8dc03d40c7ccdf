"""`chot pass verify|inspect` and `chot scan` with EU DCCs: every case of the decode chain through
the real command line, `--dsc` next to `--dcc-trust`, the JSON object, and no personal data."""

import json

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from nacl.signing import SigningKey

from chot.cli import main
from harness import dcc_pki as pki
from harness.dcc_pki import DAY, NOW
from protocol.dcc import ALG_ES256, ALG_PS256
from protocol.dcc_trust import sign_dcc_trust_list


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcc")
    ca = pki.DccCa()
    es, ps = pki.make_signer(ca, ALG_ES256), pki.make_signer(ca, ALG_PS256)
    old = pki.make_signer(ca, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    vacc_only = pki.make_signer(ca, eku=(pki.EKU_OIDS["vaccination"],))
    files = {}
    for name, signer in {"es": es, "ps": ps, "old": old, "vacc": vacc_only}.items():
        cert = x509.load_der_x509_certificate(signer.der)
        path = folder / f"{name}.pem"
        path.write_bytes(cert.public_bytes(Encoding.PEM))
        files[name] = path
    root = SigningKey.generate()
    signed = folder / "dcc-trust.cose"
    signed.write_bytes(
        sign_dcc_trust_list(
            [es.der, ps.der],
            pseudonym_key=b"s" * 32,
            version=3,
            issued_at=NOW - DAY,
            expires_at=NOW + 6 * DAY,
            root_key=root,
        )
    )
    return {
        "es": es,
        "ps": ps,
        "old": old,
        "vacc": vacc_only,
        "files": files,
        "signed": signed,
        "root_hex": bytes(root.verify_key).hex(),
    }


def verify(capsys, text: str, *extra: str) -> tuple[int, dict]:
    code = main(["pass", "verify", text, "--at", str(NOW), "--json", *map(str, extra)])
    out = capsys.readouterr().out
    return code, json.loads(out)


def dsc_args(world, *names: str) -> list[str]:
    args = []
    for name in names or ("es", "ps"):
        args += ["--dsc", str(world["files"][name])]
    return args


def payload(hcert=None) -> bytes:
    return cbor2.dumps(pki.cwt(pki.vaccination() if hcert is None else hcert))


@pytest.mark.parametrize("signer", ["es", "ps"])
@pytest.mark.parametrize("make", [pki.vaccination, pki.lab_test, pki.recovery])
def test_verify_passes_with_format_and_kind(world, capsys, signer, make):
    code, out = verify(capsys, pki.make_dcc(world[signer], make()), *dsc_args(world))
    assert code == 0, out
    assert out["verdict"] == "pass" and out["format"] == "dcc"
    assert (
        out["kind"]
        == {"v": "vaccination", "t": "test", "r": "recovery"}[next(k for k in "vtr" if k in make())]
    )
    assert set(out) == {"verdict", "reason", "issuer", "kind", "exp", "pass_ref", "format"}


def test_signed_dcc_trust_list(world, capsys):
    text = pki.make_dcc(world["es"])
    args = ["--dcc-trust", world["signed"], "--root-key", world["root_hex"]]
    code, out = verify(capsys, text, *args)
    assert (code, out["verdict"], out["format"]) == (0, "pass", "dcc")
    other_root = SigningKey.generate().verify_key
    code, out = verify(
        capsys, text, "--dcc-trust", world["signed"], "--root-key", bytes(other_root).hex()
    )
    assert code == 1 and out["reason"] == "unknown_kid"
    code, out = verify(
        capsys,
        text,
        "--dcc-trust",
        world["signed"],
        "--root-key",
        world["root_hex"],
        "--at",
        str(NOW + 7 * DAY),
    )
    assert out["reason"] == "trust_stale" and out["verdict"] == "warn"


def _negative_cases(world) -> dict[str, tuple[str, str]]:
    es = world["es"]
    good = pki.make_dcc(es)
    return {
        "bad prefix": ("HC2:" + good[4:], "not_chot"),
        "bad base45": (good + "a", "bad_base45"),
        "not compressed": (pki.to_qr(pki.sign_cose(es, payload()), compress=False), "bad_zlib"),
        "wrong cbor": (pki.to_qr(b"\xa1\x01"), "bad_cbor"),
        "kid missing": (pki.to_qr(pki.sign_cose(es, payload(), kid_in="none")), "bad_cose"),
        "kid wrong": (pki.to_qr(pki.sign_cose(es, payload(), kid=b"12345678")), "unknown_kid"),
        "wrong algorithm": (pki.to_qr(pki.sign_cose(es, payload(), alg=-8)), "bad_alg"),
        "bad signature": (pki.to_qr(pki.sign_cose(es, payload(), tamper=True)), "bad_signature"),
        "expired": (pki.make_dcc(es, iat=NOW - 400 * DAY, exp=NOW - 1), "expired"),
        "dsc out of validity": (pki.make_dcc(world["old"]), "dsc_not_in_force"),
        "eku not matching": (pki.make_dcc(world["vacc"], pki.lab_test()), "dsc_kind_not_allowed"),
        "schema": (pki.make_dcc(es, pki.vaccination(dn="2")), "bad_claims"),
        "incomplete": (pki.make_dcc(es, pki.vaccination(dn=1)), "vaccination_incomplete"),
        "positive": (pki.make_dcc(es, pki.lab_test(tr="260373001")), "test_positive"),
        "old test": (pki.make_dcc(es, pki.lab_test(sc="2022-02-20T08:00:00Z")), "test_too_old"),
        "recovery window": (pki.make_dcc(es, pki.recovery(du="2022-02-01")), "recovery_not_valid"),
    }


CASES = [
    "bad prefix",
    "bad base45",
    "not compressed",
    "wrong cbor",
    "kid missing",
    "kid wrong",
    "wrong algorithm",
    "bad signature",
    "expired",
    "dsc out of validity",
    "eku not matching",
    "schema",
    "incomplete",
    "positive",
    "old test",
    "recovery window",
]


@pytest.mark.parametrize("case", CASES)
def test_every_refusal_through_the_command_line(world, capsys, case):
    text, reason = _negative_cases(world)[case]
    code, out = verify(capsys, text, *dsc_args(world, "es", "ps", "old", "vacc"))
    assert (code, out["verdict"], out["reason"]) == (1, "fail", reason)


def test_no_personal_data_unless_revealed(world, capsys):
    hcert = pki.vaccination()
    text = pki.make_dcc(world["es"], hcert)
    ci = hcert["v"][0]["ci"]
    assert main(["pass", "verify", text, "--at", str(NOW), *dsc_args(world)]) == 0
    plain = capsys.readouterr().out
    out = verify(capsys, text, *dsc_args(world))[1]
    assert main(["pass", "inspect", text, "--json"]) == 0
    inspected = capsys.readouterr().out
    for output in (plain, json.dumps(out), inspected):
        for secret in (ci, "NGUYEN", "Nguy", "1985-04-12", "VAN<AN"):
            assert secret not in output
    code, out = verify(capsys, text, *dsc_args(world), "--reveal")
    assert code == 0
    assert out["ci"] == ci and out["dob"] == "1985-04-12" and out["name"] == "NGUYEN"


def test_inspect(world, capsys):
    text = pki.make_dcc(world["ps"], pki.recovery())
    assert main(["pass", "inspect", text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "dcc" and out["kind"] == "recovery" and out["alg"] == "PS256"
    assert out["kid"] == world["ps"].kid.hex()
    assert main(["pass", "inspect", "HC1:%%%", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "bad_base45"


def test_bad_dsc_file_is_a_usage_error(world, capsys, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("nope")
    assert main(["pass", "verify", pki.make_dcc(world["es"]), "--dsc", str(junk)]) == 2


def test_scan_handles_both_formats_in_one_run(world, capsys, tmp_path):
    from harness.vectors import load_vector
    from provisioning.qr import write_png

    chot_png = write_png(
        load_vector("chot-pass-v1.json")["qr_text"], tmp_path / "chot.png", scale=4
    )
    dcc_png = write_png(pki.make_dcc(world["es"]), tmp_path / "dcc.png", scale=4)
    bad_png = write_png(
        pki.make_dcc(world["es"], pki.lab_test(tr="260373001")), tmp_path / "p.png", scale=4
    )
    code = main(
        [
            "scan",
            str(chot_png),
            str(dcc_png),
            str(bad_png),
            "--json",
            "--at",
            str(NOW),
            *dsc_args(world),
        ]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [line.get("format") for line in lines] == [None, "dcc", "dcc"]
    assert lines[0]["reason"] == "no_trust_list"  # no chot trust list given: amber, as ever
    assert (lines[1]["verdict"], lines[1]["kind"]) == ("pass", "vaccination")
    assert (lines[2]["verdict"], lines[2]["reason"]) == ("fail", "test_positive")
