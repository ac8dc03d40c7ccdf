"""Sane issuing: each issuer has a maximum validity per kind, enforced when a pass is issued
and carried in the signed trust list so scanners enforce it too; with more than one active
issuer, `pass issue` asks which one. Through the real CLI entry point on a real ops home."""

import json
import os
from pathlib import Path

import pytest

from chot.cli import main
from protocol.clock import Clock
from protocol.pass_v1 import PassClaims, encode_pass, verify_pass
from protocol.reasons import Reason
from protocol.trust import open_trust_list
from provisioning.home import OpsHome

DOC = "001085012345"


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    data = json.loads(lines[-1]) if lines and lines[-1].startswith(("{", "[")) else None
    return code, data, captured.err


@pytest.fixture
def home(tmp_path: Path, capsys) -> Path:
    code, _info, _err = run(capsys, "provision", "init", str(tmp_path / "ops"), "--json")
    assert code == 0
    return tmp_path / "ops"


def issue(capsys, home: Path, *extra: str) -> tuple[int, dict | None, str]:
    base = ("pass", "issue", "--home", str(home), "--doc-number", DOC, "--json")
    return run(capsys, *base, *extra)


def test_hours_over_the_kind_limit_are_refused_with_a_clear_message(capsys, home: Path) -> None:
    code, data, err = issue(capsys, home, "--hours", "100000")
    assert (code, data) == (1, None)
    assert (
        "100000 hours is longer than issuer VN-HN allows for declaration passes (72 hours)" in err
    )
    assert "validity_too_long" in err
    code, data, _err = issue(capsys, home, "--hours", "72")
    assert code == 0 and data["exp"] - data["iat"] == 72 * 3600
    code, data, _err = issue(capsys, home, "--kind", "vaccination", "--hours", str(24 * 365))
    assert code == 0  # 12 months for a vaccination
    code, _data, err = issue(capsys, home, "--kind", "test", "--hours", "73")
    assert code == 1 and "(72 hours)" in err


def test_a_batch_is_refused_row_by_row_limits(capsys, home: Path, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("doc_number,kind\n001,declaration\n002,vaccination\n")
    args = ("pass", "issue", "--home", str(home), "--csv", str(csv), "--json")
    code, _data, err = run(capsys, *args, "--hours", "100")
    assert code == 1 and "declaration" in err
    code, data, _err = run(capsys, *args, "--hours", "48")
    assert code == 0 and data["count"] == 2


def test_max_hours_options_reach_the_signed_trust_list(capsys, home: Path) -> None:
    code, info, _err = run(
        capsys,
        "provision",
        "issuer",
        "create",
        "--home",
        str(home),
        "--issuer",
        "VN-HCM",
        "--max-hours",
        "declaration=24",
        "--max-hours",
        "vaccination=720",
        "--json",
    )
    assert code == 0
    assert info["max_validity"]["declaration"] == 24 * 3600
    assert info["max_validity"]["test"] == 72 * 3600  # a kind not named keeps the default
    ops = OpsHome(home)
    trust = open_trust_list((home / "trust.cose").read_bytes(), ops.root_keyring())
    entry = trust.key_for(bytes.fromhex(info["kid"]))
    assert entry is not None and entry.max_validity_s("declaration") == 24 * 3600
    code, _data, err = issue(capsys, home, "--issuer", "VN-HCM", "--hours", "30")
    assert code == 1 and "(24 hours)" in err
    code, data, _err = issue(capsys, home, "--issuer", "VN-HCM", "--hours", "24")
    assert code == 0 and data["issuer"] == "VN-HCM"
    create = ("provision", "issuer", "create", "--home", str(home), "--issuer", "X")
    for bad in ("declaration", "picnic=3", "declaration=0", "declaration=x"):
        with pytest.raises(SystemExit) as exc:
            main([*create, "--max-hours", bad])
        assert exc.value.code == 2
    capsys.readouterr()
    code, _data, err = run(capsys, *create, "--max-hours", "vaccination=100000")
    assert code == 1 and "730 days" in err


def test_over_long_pass_signed_by_the_issuer_key_is_refused_at_verify(home: Path) -> None:
    """The limit is not only the tool's politeness: a pass signed outside `pass issue` with the
    issuer's own key is refused by the verifier through the trust list."""
    ops = OpsHome(home)
    record, key = ops.issuer_signing_key()
    trust = open_trust_list((home / "trust.cose").read_bytes(), ops.root_keyring())
    iat = trust.issued_at
    claims = PassClaims(
        iss=record.issuer,
        iat=iat,
        exp=iat + 100_000 * 3600,
        cti=os.urandom(16),
        sub=os.urandom(16),
        kind="declaration",
    )
    result = verify_pass(encode_pass(claims, key), trust, Clock.synced(iat + 60))
    assert (result.verdict.value, result.reason) == ("fail", Reason.VALIDITY_TOO_LONG)
    claims.exp = iat + 72 * 3600
    result = verify_pass(encode_pass(claims, key), trust, Clock.synced(iat + 60))
    assert result.reason is Reason.OK


def test_two_active_issuers_need_a_name_or_a_default(capsys, home: Path) -> None:
    code, _info, _err = run(
        capsys, "provision", "issuer", "create", "--home", str(home), "--issuer", "VN-HCM"
    )
    assert code == 0
    code, data, err = issue(capsys, home)
    assert (code, data) == (1, None)
    assert "2 issuers are active here (VN-HCM, VN-HN)" in err and "--issuer" in err
    code, data, _err = issue(capsys, home, "--issuer", "VN-HN")
    assert code == 0 and data["issuer"] == "VN-HN"
    base = ("provision", "issuer", "default", "--home", str(home), "--json")
    code, _data, err = run(capsys, *base, "VN-NOBODY")
    assert code == 1 and "VN-NOBODY" in err
    code, data, _err = run(capsys, *base, "VN-HCM")
    assert code == 0 and data == {"default_issuer": "VN-HCM"}
    code, data, _err = issue(capsys, home)
    assert code == 0 and data["issuer"] == "VN-HCM"
    code, data, _err = run(capsys, *base, "--clear")
    assert code == 0 and data == {"default_issuer": None}
    assert issue(capsys, home)[0] == 1


def test_a_rotated_key_of_the_same_issuer_is_not_ambiguous(capsys, home: Path) -> None:
    code, _info, _err = run(
        capsys, "provision", "issuer", "create", "--home", str(home), "--issuer", "VN-HN"
    )
    assert code == 0
    code, data, _err = issue(capsys, home)
    assert code == 0 and data["issuer"] == "VN-HN"
