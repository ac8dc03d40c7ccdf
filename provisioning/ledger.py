"""The issuing ledger: every pass this ops home signed, so a person's passes can be revoked.

One row per pass: reference, subject pseudonym, kind, issuer, validity, when revoked. No
name, no document number, no birth year: the pseudonym is an HMAC under the issuer secret
(provisioning/passes.py), so the ledger alone cannot tell whose passes these are; with the
home's secret, ``revoke --doc-number`` recomputes the pseudonym and finds them.

``HOME/ledger.db`` (SQLite, 0600). Written when a pass is signed: a pass that was printed is
in the ledger, whatever happens to the card.
"""

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.pass_v1 import PassClaims

SCHEMA = """
CREATE TABLE IF NOT EXISTS issued (
    pass_ref BLOB PRIMARY KEY,
    sub BLOB NOT NULL,
    kind TEXT NOT NULL,
    issuer TEXT NOT NULL,
    iat INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS issued_by_sub ON issued (sub, exp);
"""


@dataclass(frozen=True)
class IssuedPass:
    pass_ref: bytes
    sub: bytes
    kind: str
    issuer: str
    iat: int
    exp: int
    revoked_at: int | None

    def public(self) -> dict:
        """What may be printed: no pseudonym (it would link the person's passes)."""
        return {
            "pass_ref": self.pass_ref.hex(),
            "kind": self.kind,
            "issuer": self.issuer,
            "iat": self.iat,
            "exp": self.exp,
            "revoked_at": self.revoked_at,
        }


class IssuingLedger:
    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self.path = path
        self._db = sqlite3.connect(path)
        if new:
            os.chmod(path, 0o600)
        self._db.executescript(SCHEMA)

    def record(self, *passes: PassClaims) -> None:
        """In one transaction (one fsync for a whole CSV batch, not one per card)."""
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO issued VALUES (?, ?, ?, ?, ?, ?, NULL)",
                [(c.pass_ref, c.sub, c.kind, c.iss, c.iat, c.exp) for c in passes],
            )

    def live_for(self, sub: bytes, now: int | None = None) -> list[IssuedPass]:
        """The person's passes still valid and not revoked, oldest first."""
        at = int(time.time()) if now is None else now
        rows = self._db.execute(
            "SELECT * FROM issued WHERE sub = ? AND exp > ? AND revoked_at IS NULL ORDER BY iat",
            (sub, at),
        ).fetchall()
        return [_row(r) for r in rows]

    def for_subject(self, sub: bytes) -> list[IssuedPass]:
        rows = self._db.execute("SELECT * FROM issued WHERE sub = ? ORDER BY iat", (sub,))
        return [_row(r) for r in rows.fetchall()]

    def mark_revoked(self, refs: list[bytes], now: int | None = None) -> None:
        at = int(time.time()) if now is None else now
        with self._db:
            self._db.executemany(
                "UPDATE issued SET revoked_at = ? WHERE pass_ref = ? AND revoked_at IS NULL",
                [(at, ref) for ref in refs],
            )

    def close(self) -> None:
        self._db.close()


def _row(r: tuple) -> IssuedPass:
    return IssuedPass(bytes(r[0]), bytes(r[1]), r[2], r[3], r[4], r[5], r[6])
