"""A person's side of the ops desk: the pseudonym to trace, and revoking all their passes.

Both need the issuer secret (``HOME/issuer.secret``), which is why they run here and not at
the centre: the centre only ever sees pseudonyms. The document number is taken from the
command line, normalised, hashed, and forgotten; it is never stored, printed or logged.

    chot provision subject --doc-number N           -> the pseudonym health staff trace
    chot provision pass revoke --doc-number N       -> every live pass of that person revoked
"""

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.i18n import N_, Phrase
from protocol.pass_v1 import PassClaims
from provisioning.errors import OpsError
from provisioning.ledger import IssuedPass, IssuingLedger
from provisioning.passes import subject_pseudonym

if TYPE_CHECKING:
    from provisioning.home import OpsHome

LEDGER_FILE = "ledger.db"


def ledger(home: "OpsHome") -> IssuingLedger:
    return IssuingLedger(home.path / LEDGER_FILE)


def record_issued(home: "OpsHome", *passes: PassClaims) -> None:
    """Into the ledger before any of them is shown, saved or printed."""
    book = ledger(home)
    try:
        book.record(*passes)
    finally:
        book.close()


def pseudonym(home: "OpsHome", doc_number: str) -> bytes:
    try:
        return subject_pseudonym(home._issuer_secret(), doc_number)
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def revoke_person(home: "OpsHome", doc_number: str, *, now: int | None = None) -> list[IssuedPass]:
    """Revoke every live pass issued to the person, with ONE new revocation list version."""
    book = ledger(home)
    try:
        live = book.live_for(pseudonym(home, doc_number), now)
        if not live:
            return []
        revoked = {*home.state.revoked_pass_refs, *(p.pass_ref.hex() for p in live)}
        home.state.revoked_pass_refs = sorted(revoked)
        home.save()
        home.sign_revocation_list(now=now)
        book.mark_revoked([p.pass_ref for p in live], now)
        return live
    finally:
        book.close()


# --- command line ------------------------------------------------------------------------------


def add_commands(
    psub: Any,
    leaf: Callable[..., argparse.ArgumentParser],
    output: type,
    home_of: Callable[[argparse.Namespace], "OpsHome"],
) -> None:
    """``chot provision subject``; ``pass revoke --doc-number`` is in provisioning/cli_passes.py."""

    def cmd_subject(args: argparse.Namespace) -> Any:
        home = home_of(args)
        sub = pseudonym(home, args.doc_number)
        book = ledger(home)
        try:
            passes = [p.public() for p in book.for_subject(sub)]
        finally:
            book.close()
        data = {"sub": sub.hex(), "passes": passes}
        issued = Phrase(N_("({count} passes issued by this home)"), {"count": len(passes)})
        return output(data, [sub.hex(), issued])

    p = leaf(
        psub,
        "subject",
        "the pseudonym to trace for an ID document number (never stored)",
        cmd_subject,
    )
    p.add_argument("--doc-number", required=True, help="ID document number (only hashed)")
