"""Pass issuing for plastic-card batches: CSV row -> signed QR text, and 1,000 cards -> PDF.

Reference: bare PyNaCl Ed25519 signing of the same number of messages in this run, so the
ratio shows what chot adds around the signature (HMAC pseudonym, CBOR, COSE, zlib, base45).
Cards: about 3/4 of the time is segno choosing the best of the 8 QR masks in pure Python
(~13 ms a symbol); kept, because the mask choice is what keeps a printed code easy to scan, and
a print run of 1,000 plastic cards takes far longer than the file.
"""

import csv
import sys
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._table import markdown, row
from provisioning.home import OpsHome
from provisioning.issue import issue_batch


def run(quick: bool = False) -> list[dict]:
    n = 300 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        home = OpsHome.init(Path(tmp) / "ops")
        people = Path(tmp) / "people.csv"
        with open(people, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["doc_number", "kind"])
            writer.writerows([f"0790{i:08d}", "declaration"] for i in range(n))
        started = time.perf_counter()
        issue_batch(home, people)
        issue_s = time.perf_counter() - started
        started = time.perf_counter()
        issue_batch(home, people, pdf=Path(tmp) / "cards.pdf")
        with_pdf_s = time.perf_counter() - started
    key = SigningKey.generate()
    messages = [i.to_bytes(4, "big") * 40 for i in range(n)]
    started = time.perf_counter()
    for m in messages:
        key.sign(m)
    bare_s = time.perf_counter() - started
    ratio = issue_s / bare_s
    pdf_s = with_pdf_s - issue_s
    return [
        row(
            "pass issue from CSV: row -> QR text",
            f"{n / issue_s:,.0f} /s",
            f"{n / bare_s:,.0f} /s bare Ed25519 sign",
            ratio,
            "informational",
            None,
        ),
        row(
            f"printable cards: {n} passes -> A4 PDF",
            f"{pdf_s:.2f} s (+ issuing)",
            "",
            None,
            f"{n} cards < 30 s",
            pdf_s < 30 * n / 1000,
        ),
    ]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
