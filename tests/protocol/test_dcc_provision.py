"""`chot provision dcc add|import|list|sign`: DSC files into a root-signed DCC trust list in the
ops home, versioned, delivered to gateway bundles; `chot pass verify` then trusts it."""

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from chot.cli import main
from harness import dcc_pki as pki
from protocol.clock import Clock
from protocol.dcc import ALG_PS256, verify_dcc
from protocol.dcc_trust import open_dcc_trust_list
from protocol.reasons import Verdict
from protocol.trust import root_keyring


@pytest.fixture(scope="module")
def signers() -> list[pki.Signer]:
    ca = pki.DccCa()
    return [pki.make_signer(ca), pki.make_signer(ca, ALG_PS256), pki.make_signer(ca)]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


@pytest.fixture
def home(tmp_path, capsys) -> Path:
    code, _ = run(capsys, "provision", "init", tmp_path / "ops")
    assert code == 0
    return tmp_path / "ops"


def open_list(home: Path):
    keys = root_keyring([bytes.fromhex((home / "root.pub").read_text().strip())])
    return open_dcc_trust_list((home / "dcc-trust.cose").read_bytes(), keys)


def test_add_pem_der_base64_then_import_a_national_list(home, tmp_path, signers, capsys):
    es, ps, third = signers
    pem = tmp_path / "es.pem"
    pem.write_bytes(x509.load_der_x509_certificate(es.der).public_bytes(Encoding.PEM))
    der = tmp_path / "ps.der"
    der.write_bytes(ps.der)
    code, out = run(capsys, "provision", "dcc", "add", "--home", home, pem, der, "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["version"] == 1 and first["dscs"] == 2
    assert set(first["added"]) == {es.kid.hex(), ps.kid.hex()}
    trust = open_list(home)
    assert set(trust.dscs) == {es.kid, ps.kid} and len(trust.pseudonym_key) == 32
    key_file = home / "dcc" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    national = tmp_path / "backend.json"
    item = {
        "kid": base64.b64encode(third.kid).decode(),
        "rawData": base64.b64encode(third.der).decode(),
    }
    national.write_text(json.dumps([item]))
    code, out = run(capsys, "provision", "dcc", "import", "--home", home, national, "--json")
    assert code == 0, out
    assert json.loads(out)["version"] == 2
    second = open_list(home)
    assert set(second.dscs) == {es.kid, ps.kid, third.kid}
    assert second.pseudonym_key == trust.pseudonym_key  # stable pseudonyms across versions
    at = Clock.synced(pki.NOW)  # inside the test DSCs' validity and the list's age
    assert verify_dcc(pki.make_dcc(third), second, at).verdict is Verdict.PASS

    code, out = run(capsys, "provision", "dcc", "list", "--home", home, "--json")
    assert {i["kid"] for i in json.loads(out)} == {s.kid.hex() for s in signers}


def test_bad_inputs_change_nothing(home, tmp_path, signers, capsys):
    good = tmp_path / "good.b64"
    good.write_bytes(base64.b64encode(signers[0].der))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert run(capsys, "provision", "dcc", "add", "--home", home, good, junk)[0] == 2
    assert not (home / "dcc-trust.cose").exists()
    lying = tmp_path / "lying.json"
    lying.write_text(
        json.dumps([{"kid": "AAAAAAAAAAA=", "rawData": base64.b64encode(signers[0].der).decode()}])
    )
    assert run(capsys, "provision", "dcc", "import", "--home", home, lying)[0] == 2
    assert run(capsys, "provision", "dcc", "add", "--home", home, good)[0] == 0
    # an explicit version must be newer
    assert run(capsys, "provision", "dcc", "sign", "--home", home, "--version", "1")[0] == 1
    code, out = run(capsys, "provision", "dcc", "sign", "--home", home, "--json")
    assert code == 0 and json.loads(out)["version"] == 2
