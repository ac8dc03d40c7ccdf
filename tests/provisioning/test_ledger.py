"""The issuing ledger: revoke everything issued to one person, trace a person's pseudonym.

Real ops home, real CLI, passes verified against the re-signed revocation list as a scanner
does; the ledger file holds no document number and no name.
"""

import sqlite3
import time

import pytest

from protocol.pass_v1 import decode_pass, verify_pass
from protocol.reasons import Reason
from protocol.trust import open_revocation_list, open_trust_list
from provisioning.home import OpsHome
from provisioning.issue import issue_batch
from provisioning.passes import subject_pseudonym
from provisioning.subject import ledger, revoke_person
from tests.provisioning.conftest import parse_json

PERSON, OTHER = "079 203-000.123", "001098000999"


@pytest.fixture
def home(tmp_path):
    """Made now (the revoke command signs at the real time, so the lists are checked then)."""
    return OpsHome.init(tmp_path / "ops", now=int(time.time()) - 3 * 3600)


def verdict(home, qr_text: str):
    now = int(time.time())
    trust = open_trust_list(home.trust_list_bytes(), home.root_keyring())
    revoked = open_revocation_list(home.revocation_list_bytes(), home.root_keyring())
    from protocol.clock import Clock

    return verify_pass(qr_text, trust, Clock.synced(now), revocations=revoked).reason


def test_revoke_by_doc_number_revokes_all_live_passes_of_that_person(home, run_cli):
    mine = [home.issue_pass(kind=k, doc_number=PERSON)[0] for k in ("declaration", "test")]
    same_person_other_spelling = home.issue_pass(kind="declaration", doc_number="079203000123")[0]
    expired = home.issue_pass(
        kind="declaration", doc_number=PERSON, now=int(time.time()) - 7200, hours=1
    )[0]
    theirs = home.issue_pass(kind="declaration", doc_number=OTHER)[0]
    for text in [*mine, same_person_other_spelling, theirs]:
        assert verdict(home, text) is Reason.OK
    before = home.state.revocation_version

    code, out = run_cli(
        "provision", "pass", "revoke", "--doc-number", PERSON, "--home", home.path, "--json"
    )
    assert code == 0
    result = parse_json(out)
    refs = {decode_pass(t).claims.pass_ref.hex() for t in [*mine, same_person_other_spelling]}
    assert set(result["revoked"]) == refs  # the three live ones, not the expired one
    assert decode_pass(expired).claims.pass_ref.hex() not in result["revoked"]
    assert result["revocation_version"] == before + 1  # one new list for all of them

    home = OpsHome(home.path)
    for text in [*mine, same_person_other_spelling]:
        assert verdict(home, text) is Reason.REVOKED
    assert verdict(home, theirs) is Reason.OK  # another person untouched

    # again: nothing live left, no new list
    code, out = run_cli(
        "provision", "pass", "revoke", "--doc-number", PERSON, "--home", home.path, "--json"
    )
    assert code == 0 and parse_json(out)["revoked"] == []
    # by reference, as before (positional and --ref)
    ref = decode_pass(theirs).claims.pass_ref.hex()
    code, out = run_cli("provision", "pass", "revoke", "--ref", ref, "--home", home.path, "--json")
    assert code == 0 and parse_json(out)["revoked"] == ref
    assert verdict(OpsHome(home.path), theirs) is Reason.REVOKED

    # the ledger keeps pseudonyms, never the number or a name
    raw = (home.path / "ledger.db").read_bytes()
    for secret in (b"079203000123", b"079 203", b"001098000999"):
        assert secret not in raw
    cols = [
        r[1] for r in sqlite3.connect(home.path / "ledger.db").execute("PRAGMA table_info(issued)")
    ]
    assert cols == ["pass_ref", "sub", "kind", "issuer", "iat", "exp", "revoked_at"]
    assert (home.path / "ledger.db").stat().st_mode & 0o077 == 0


def test_subject_prints_the_pseudonym_health_staff_trace(home, run_cli):
    _qr, claims = home.issue_pass(kind="declaration", doc_number=PERSON)
    code, out = run_cli(
        "provision", "subject", "--doc-number", PERSON, "--home", home.path, "--json"
    )
    assert code == 0
    data = parse_json(out)
    assert data["sub"] == claims.sub.hex() == subject_pseudonym(home._issuer_secret(), PERSON).hex()
    assert [p["pass_ref"] for p in data["passes"]] == [claims.pass_ref.hex()]
    code, out = run_cli("provision", "subject", "--doc-number", PERSON, "--home", home.path)
    assert code == 0 and out.splitlines()[0] == claims.sub.hex()
    assert "079" not in out
    code, _ = run_cli("provision", "subject", "--doc-number", "not a number!", "--home", home.path)
    assert code != 0


def test_a_csv_batch_is_in_the_ledger_before_its_cards_are_written(home, tmp_path) -> None:
    """A batch records all its passes in one transaction before any PNG or PDF exists, so a
    person with two rows in the CSV loses both passes to one revoke."""
    people = tmp_path / "people.csv"
    people.write_text(
        f"doc_number,kind\n{PERSON},declaration\n{OTHER},declaration\n{PERSON},test\n"
    )
    batch = issue_batch(home, people, png_dir=tmp_path / "png")
    assert batch["count"] == 3
    book = ledger(home)
    try:
        sub = subject_pseudonym(home._issuer_secret(), PERSON)
        assert {p.kind for p in book.live_for(sub)} == {"declaration", "test"}
    finally:
        book.close()
    revoked = revoke_person(home, PERSON)
    mine = {r["pass_ref"] for r in batch["passes"][0::2]}
    assert {p.pass_ref.hex() for p in revoked} == mine
