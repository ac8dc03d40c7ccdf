"""Issue passes for people: one at the desk, or a batch from a CSV (KSDB plastic cards).

Output is what the person carries: the QR text, a PNG, or a printable card sheet. What is
returned for printing/JSON is public (pass reference, kind, validity); the document number is
never in it, and name/doc4/dob only inside the signed QR text itself.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.pass_v1 import PassClaims
from provisioning.passes import read_csv
from provisioning.pdf import Card, write_cards_pdf
from provisioning.qr import write_png
from provisioning.subject import record_issued

if TYPE_CHECKING:
    from provisioning.home import OpsHome


def public_record(qr_text: str, claims: PassClaims) -> dict[str, Any]:
    return {
        "qr_text": qr_text,
        "pass_ref": claims.pass_ref.hex(),
        "kind": claims.kind,
        "issuer": claims.iss,
        "iat": claims.iat,
        "exp": claims.exp,
    }


def _card(qr_text: str, claims: PassClaims, print_name: bool) -> Card:
    name = claims.name if print_name else None
    return Card(qr_text, claims.kind, claims.iss, claims.iat, claims.exp, claims.pass_ref, name)


def issue_single(
    home: "OpsHome",
    *,
    kind: str,
    doc_number: str,
    hours: float = 72,
    issuer: str | None = None,
    name: str | None = None,
    doc4: str | None = None,
    dob: int | None = None,
    png: Path | None = None,
    pdf: Path | None = None,
    print_name: bool = False,
) -> dict[str, Any]:
    qr_text, claims = home.issue_pass(
        kind=kind, doc_number=doc_number, hours=hours, issuer=issuer, name=name, doc4=doc4, dob=dob
    )
    record = public_record(qr_text, claims)
    if png:
        record["png"] = str(write_png(qr_text, png))
    if pdf:
        record["pdf"] = str(write_cards_pdf([_card(qr_text, claims, print_name)], pdf))
    return record


def issue_batch(
    home: "OpsHome",
    csv_path: Path,
    *,
    hours: float = 72,
    issuer: str | None = None,
    png_dir: Path | None = None,
    pdf: Path | None = None,
    print_name: bool = False,
) -> dict[str, Any]:
    """Every row of the CSV signed with one issuer key (read once)."""
    key = home.issuer_signing_key(issuer)
    signed = [
        home.sign_pass(
            kind=row.kind,
            doc_number=row.doc_number,
            hours=hours,
            name=row.name,
            doc4=row.doc4,
            dob=row.dob,
            _key=key,
        )
        for row in read_csv(csv_path)
    ]
    record_issued(home, *(claims for _, claims in signed))  # before any card is written
    records, cards = [], []
    if png_dir:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    for qr_text, claims in signed:
        record = public_record(qr_text, claims)
        if png_dir:
            record["png"] = str(write_png(qr_text, Path(png_dir) / f"{claims.pass_ref.hex()}.png"))
        records.append(record)
        cards.append(_card(qr_text, claims, print_name))
    result: dict[str, Any] = {"count": len(records), "passes": records}
    if pdf:
        result["pdf"] = str(write_cards_pdf(cards, pdf))
    return result
