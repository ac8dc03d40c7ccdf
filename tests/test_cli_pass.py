"""`chot provision init`, `chot pass issue`, `chot pass verify` and `chot pass inspect` as written
in the foundation issue: through the real CLI entry point, on a real ops home."""

import io
import json

import pytest

from chot.cli import main


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture
def home(tmp_path, capsys):
    code, info = run(capsys, "provision", "init", str(tmp_path / "ops"), "--json")
    assert code == 0 and info["trust_version"] == 1
    return tmp_path / "ops"


def issue(capsys, home, *extra: str) -> dict:
    code, out = run(
        capsys,
        "pass",
        "issue",
        "--home",
        str(home),
        "--kind",
        "declaration",
        "--doc-number",
        "001085012345",
        "--json",
        *extra,
    )
    assert code == 0
    return out


def test_issue_verify_inspect_round_trip(home, capsys, tmp_path):
    issued = issue(capsys, home, "--png", str(tmp_path / "pass.png"))
    assert (tmp_path / "pass.png").stat().st_size > 500
    assert "001085012345" not in json.dumps(issued)
    trust = str(home / "trust.cose")
    code, verdict = run(capsys, "pass", "verify", "--trust", trust, "--json", issued["qr_text"])
    assert code == 0
    assert verdict == {
        "verdict": "pass",
        "reason": "ok",
        "issuer": "VN-HN",
        "kind": "declaration",
        "exp": issued["exp"],
        "pass_ref": issued["pass_ref"],
    }
    code, info = run(capsys, "pass", "inspect", "--json", issued["qr_text"])
    assert code == 0
    assert set(info) == {"issuer", "kind", "kid", "iat", "exp", "pass_ref"}
    assert info["pass_ref"] == issued["pass_ref"] and len(info["kid"]) == 16


def test_verify_exit_codes_and_reasons(home, capsys, monkeypatch):
    issued = issue(capsys, home)
    trust = str(home / "trust.cose")
    at = str(issued["exp"] + 1)
    code, verdict = run(
        capsys, "pass", "verify", "--trust", trust, "--at", at, "--json", issued["qr_text"]
    )
    assert (code, verdict["verdict"], verdict["reason"]) == (1, "fail", "expired")
    code, verdict = run(capsys, "pass", "verify", "--json", issued["qr_text"])  # no trust list
    assert (code, verdict["verdict"], verdict["reason"]) == (3, "warn", "no_trust_list")
    monkeypatch.setattr("sys.stdin", io.StringIO("CHOT1:000\n"))
    code, verdict = run(capsys, "pass", "verify", "--trust", trust, "--json", "-")
    assert (code, verdict["reason"]) == (1, "bad_zlib")
    code, info = run(capsys, "pass", "inspect", "--json", "not a pass")
    assert (code, info["reason"]) == (1, "not_chot")
    # people read the verdict and what to do, in their language; scripts read the exit code
    monkeypatch.setenv("CHOT_LANG", "vi")
    assert main(["pass", "verify", "--trust", trust, "--at", at, issued["qr_text"]]) == 1
    assert capsys.readouterr().out.startswith("Không hợp lệ: Hết hạn — yêu cầu khai báo lại\n")
    monkeypatch.setenv("CHOT_LANG", "en")
    assert main(["pass", "verify", issued["qr_text"]]) == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first
        == "Check by hand: No trust list on the scanner — check the pass and ID card by hand; call the technician"
    )
    with pytest.raises(SystemExit) as exc:
        main(["pass", "verify", "--no-such-flag"])
    assert exc.value.code == 2


def test_personal_data_only_with_reveal(home, capsys):
    issued = issue(capsys, home, "--name", "Nguyen Van A", "--doc4", "2345", "--dob", "1985")
    trust = str(home / "trust.cose")
    code, verdict = run(capsys, "pass", "verify", "--trust", trust, "--json", issued["qr_text"])
    assert code == 0 and not {"name", "doc4", "dob"} & set(verdict)
    code, verdict = run(
        capsys, "pass", "verify", "--trust", trust, "--json", "--reveal", issued["qr_text"]
    )
    assert (verdict["name"], verdict["doc4"], verdict["dob"]) == ("Nguyen Van A", "2345", 1985)
