"""Pass issuing helpers: the subject pseudonym and batch input.

sub = HMAC-SHA256(issuer secret, normalized document number)[0:16]: the same person gets the
same pseudonym on every pass (what tracing needs), yet nobody without the issuer secret can
go from a pseudonym back to a document number, or test a guess. The number itself is never
stored or printed by chot.
"""

import csv
import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.trust import PASS_KINDS

SUB_LENGTH = 16


def normalize_doc_number(doc_number: str) -> str:
    """Upper case without spaces, dots or dashes: "001 098-000.123" -> "001098000123"."""
    value = re.sub(r"[\s.\-/]", "", str(doc_number)).upper()
    if not value or not value.isalnum():
        raise ValueError("document number must be letters and digits")
    return value


def subject_pseudonym(issuer_secret: bytes, doc_number: str) -> bytes:
    digest = hmac.new(issuer_secret, normalize_doc_number(doc_number).encode(), hashlib.sha256)
    return digest.digest()[:SUB_LENGTH]


def format_pass_ref(ref: bytes) -> str:
    """Human-readable pass reference: 8 groups of 4 hex digits."""
    text = ref.hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_pass_ref(text: str) -> bytes:
    ref = bytes.fromhex(re.sub(r"[\s\-]", "", text))
    if len(ref) != SUB_LENGTH:
        raise ValueError("a pass reference is 16 bytes (32 hex digits)")
    return ref


@dataclass(frozen=True)
class PassRequest:
    """One row of a batch. Holds the document number only in memory, for the pseudonym."""

    doc_number: str
    kind: str
    name: str | None = None
    doc4: str | None = None
    dob: int | None = None

    def __repr__(self) -> str:  # never show personal data in tracebacks or logs
        return f"PassRequest(kind={self.kind!r})"


def read_csv(path: Path) -> Iterator[PassRequest]:
    """Rows with columns doc_number, kind and optionally name, doc4, dob (birth year)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"doc_number", "kind"} <= set(reader.fieldnames):
            raise ValueError("CSV needs the columns doc_number and kind")
        for line, row in enumerate(reader, start=2):
            kind = (row.get("kind") or "").strip()
            if kind not in PASS_KINDS:
                raise ValueError(f"line {line}: kind must be one of {', '.join(PASS_KINDS)}")
            dob = (row.get("dob") or "").strip()
            if dob and not dob.isdigit():
                raise ValueError(f"line {line}: dob must be a birth year")
            yield PassRequest(
                doc_number=(row.get("doc_number") or "").strip(),
                kind=kind,
                name=(row.get("name") or "").strip() or None,
                doc4=(row.get("doc4") or "").strip() or None,
                dob=int(dob) if dob else None,
            )
