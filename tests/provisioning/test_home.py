"""Ops home round trips: keys, issuers, signed lists and passes through the real protocol."""

import os
import stat
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from protocol.clock import Clock
from protocol.documents import check_newer, open_document
from protocol.pass_v1 import decode_pass, verify_pass
from protocol.reasons import ProtocolError, Reason, Verdict
from protocol.trust import REVOCATION_TYPE, TRUST_TYPE, open_revocation_list, open_trust_list
from provisioning.errors import OpsError, VersionError
from provisioning.home import OpsHome
from provisioning.passes import subject_pseudonym
from provisioning.secrets import SecretExists
from tests.provisioning.conftest import NOW, parse_json

DOC = "001098000123"


def lists(home: OpsHome):
    keys = home.root_keyring()
    return (
        open_trust_list(home.trust_list_bytes(), keys),
        open_revocation_list(home.revocation_list_bytes(), keys),
    )


def verify(home: OpsHome, qr: str, at: int = NOW + 60):
    trust, revocations = lists(home)
    return verify_pass(qr, trust, Clock.synced(at), revocations=revocations)


def test_init_issue_verify_round_trip(home: OpsHome) -> None:
    qr, claims = home.issue_pass(kind="declaration", doc_number=DOC, now=NOW)
    result = verify(home, qr)
    assert (result.verdict, result.reason) == (Verdict.PASS, Reason.OK)
    assert claims.exp - claims.iat == 72 * 3600
    assert verify(home, qr, at=claims.exp + 1).reason is Reason.EXPIRED
    # the pseudonym is keyed and stable across spellings of the same number
    assert claims.sub == subject_pseudonym(home._issuer_secret(), "001 098-000.123")
    _qr2, claims2 = home.issue_pass(kind="test", doc_number=DOC, now=NOW, hours=24)
    assert claims2.sub == claims.sub and claims2.cti != claims.cti


def test_cli_init_and_pass_issue_with_png(tmp_path: Path, run_cli) -> None:
    code, out = run_cli("provision", "init", tmp_path / "ops", "--issuer", "VN-DN", "--json")
    assert code == 0
    info = parse_json(out)
    assert info["issuer"] == "VN-DN" and "root.key" not in out
    png = tmp_path / "pass.png"
    code, out = run_cli(
        "pass",
        "issue",
        "--home",
        tmp_path / "ops",
        "--kind",
        "declaration",
        "--doc-number",
        DOC,
        "--png",
        png,
        "--json",
    )
    assert code == 0
    issued = parse_json(out)
    assert DOC not in out
    home = OpsHome(tmp_path / "ops")
    assert verify(home, issued["qr_text"], at=issued["iat"] + 5).verdict is Verdict.PASS
    decoded = zxingcpp.read_barcodes(Image.open(png))
    assert [d.text for d in decoded] == [issued["qr_text"]]
    # plain mode prints the QR text alone, ready to pipe into `chot pass verify -`
    code, out = run_cli("pass", "issue", "--home", tmp_path / "ops", "--doc-number", DOC)
    assert code == 0 and out.strip().startswith("CHOT1:") and len(out.strip().splitlines()) == 1
    # init refuses to overwrite an existing home
    code, _ = run_cli("provision", "init", tmp_path / "ops")
    assert code == 1


def test_secret_files_are_0600_and_no_doc_number_anywhere(home: OpsHome, tmp_path: Path) -> None:
    home.issue_pass(
        kind="declaration", doc_number=DOC, name="Nguyen Van A", doc4="0123", dob=1980, now=NOW
    )
    home.add_device("HN-01", "hn01-lane1")
    home.add_gateway("HN-01", "hn01-gw")
    home.add_operator("HN-01", "alice", "correct horse battery")
    secret_names = {
        "root.key",
        "issuer.secret",
        "device.key",
        "gateway.key",
        "mqtt.password",
        "central.token",
        "ca.key",
        "passwd",
        "operators.json",
    }
    seen = set()
    for path in home.path.rglob("*"):
        if not path.is_file():
            continue
        content = path.read_bytes()
        assert DOC.encode() not in content, path
        assert b"Nguyen" not in content, path
        if path.name in secret_names or path.parent.name == "issuers":
            seen.add(path.name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert secret_names <= seen | {"ca.key"}
    assert {"root.key", "device.key", "mqtt.password", "central.token", "ca.key"} <= seen


def test_keys_are_never_overwritten(home: OpsHome) -> None:
    with pytest.raises(OpsError):
        OpsHome.init(home.path)
    os.remove(home.path / "ops.json")
    with pytest.raises(OpsError):  # root.key alone is enough to refuse
        OpsHome.init(home.path)
    from provisioning.secrets import write_secret

    with pytest.raises(SecretExists):
        write_secret(home.path / "root.key", b"00")


def test_versions_strictly_increase_and_reuse_is_rollback(home: OpsHome, run_cli) -> None:
    keys = home.root_keyring()
    first = open_document(home.trust_list_bytes(), TRUST_TYPE, keys)
    second_bytes = home.sign_trust_list(now=NOW)
    second = open_document(second_bytes, TRUST_TYPE, keys)
    assert second.version == first.version + 1 and check_newer(second, first)
    with pytest.raises(VersionError):
        home.sign_trust_list(version=second.version)
    with pytest.raises(VersionError):
        home.sign_revocation_list(version=1)
    # a document that reuses a version with other content is refused by holders
    from protocol.trust import sign_trust_list

    forged = sign_trust_list(
        [],
        version=second.version,
        issued_at=NOW,
        expires_at=NOW + 60,
        root_key=home.root_signing_key(),
    )
    with pytest.raises(ProtocolError) as err:
        check_newer(open_document(forged, TRUST_TYPE, keys), second)
    assert err.value.reason is Reason.ROLLBACK
    code, _ = run_cli("provision", "trust", "sign", "--home", home.path, "--version", "2")
    assert code == 1
    code, out = run_cli("provision", "revocations", "sign", "--home", home.path, "--json")
    assert code == 0 and parse_json(out)["version"] == 2
    doc = open_document(home.revocation_list_bytes(), REVOCATION_TYPE, keys)
    assert doc.version == 2 and doc.expires_at - doc.issued_at == 7 * 86400


def test_rotation_retire_and_revoke_issuer(home: OpsHome, run_cli) -> None:
    old_kid = home.list_issuers()[0].kid
    old_qr, _ = home.issue_pass(kind="declaration", doc_number=DOC, now=NOW)
    new = home.create_issuer("VN-HN", now=NOW + 10)
    home.retire_issuer(old_kid, now=NOW + 20)
    new_qr, _ = home.issue_pass(kind="declaration", doc_number=DOC, now=NOW + 30)
    assert decode_pass(new_qr).kid.hex() == new.kid
    # the old key's passes stay valid until they expire; the new key works alongside
    assert verify(home, old_qr).verdict is Verdict.PASS
    assert verify(home, new_qr, at=NOW + 40).verdict is Verdict.PASS
    code, out = run_cli("provision", "issuer", "list", "--home", home.path, "--json")
    status = {i["kid"]: i["status"] for i in parse_json(out)}
    assert status == {old_kid: "retired", new.kid: "active"}
    # revoking the new key: every pass it signed is refused
    code, _ = run_cli("provision", "issuer", "revoke", "--home", home.path, new.kid[:8])
    assert code == 0
    assert verify(home, new_qr, at=NOW + 40).verdict is Verdict.FAIL
    trust, revocations = lists(home)
    assert (
        bytes.fromhex(new.kid) in revocations.kids and trust.key_for(bytes.fromhex(new.kid)) is None
    )
    with pytest.raises(OpsError):  # nothing left to issue with (state re-read after the CLI)
        OpsHome(home.path).issue_pass(kind="declaration", doc_number=DOC, now=NOW + 50)


def test_external_issuer_joins_by_public_key(home: OpsHome, run_cli) -> None:
    from nacl.signing import SigningKey

    from protocol.pass_v1 import PassClaims, encode_pass

    other = SigningKey.generate()
    pub = bytes(other.verify_key).hex()
    code, out = run_cli(
        "provision",
        "issuer",
        "add",
        "--home",
        home.path,
        "--issuer",
        "VN-SG",
        "--public-key",
        pub,
        "--kinds",
        "vaccination,test",
        "--json",
    )
    assert code == 0
    code, out = run_cli("provision", "issuer", "list", "--home", home.path, "--json")
    entry = next(i for i in parse_json(out) if i["issuer"] == "VN-SG")
    assert entry["public_key"] == pub and entry["kinds"] == ["vaccination", "test"]
    assert entry["status"] == "active" and entry["local"] is False and len(entry["kid"]) == 16
    claims = PassClaims(
        iss="VN-SG",
        iat=NOW,
        exp=NOW + 3600,
        cti=os.urandom(16),
        sub=os.urandom(16),
        kind="vaccination",
    )
    assert verify(home, encode_pass(claims, other)).verdict is Verdict.PASS
    wrong_kind = PassClaims(
        iss="VN-SG",
        iat=NOW,
        exp=NOW + 3600,
        cti=os.urandom(16),
        sub=os.urandom(16),
        kind="declaration",
    )
    assert verify(home, encode_pass(wrong_kind, other)).reason is Reason.KIND_NOT_ALLOWED
    code, _ = run_cli(
        "provision", "issuer", "add", "--home", home.path, "--issuer", "X", "--public-key", "abcd"
    )
    assert code == 1


def test_revoke_pass_by_reference(home: OpsHome, run_cli) -> None:
    qr, claims = home.issue_pass(kind="declaration", doc_number=DOC, now=NOW)
    ref = claims.pass_ref.hex()
    spaced = " ".join(ref[i : i + 4] for i in range(0, 32, 4))
    code, out = run_cli("provision", "pass", "revoke", "--home", home.path, spaced, "--json")
    assert code == 0 and parse_json(out)["revocation_version"] == 2
    result = verify(home, qr, at=int(__import__("time").time()))
    assert result.reason is Reason.REVOKED


def test_sealed_root_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHOT_PASSPHRASE", "a long ops passphrase")
    home = OpsHome.init(tmp_path / "ops", encrypt=True, now=NOW)
    raw = (home.path / "root.key").read_bytes()
    assert raw.startswith(b"{") and bytes(home.root_signing_key()).hex().encode() not in raw
    reopened = OpsHome(home.path)
    assert bytes(reopened.root_signing_key().verify_key) == home.root_public_key()
    monkeypatch.setenv("CHOT_PASSPHRASE", "wrong")
    with pytest.raises(ValueError):
        OpsHome(home.path).root_signing_key()
