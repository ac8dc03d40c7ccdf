"""One small PKI for tests and benchmarks: an ops root key, one issuer key ("VN-HN"), the
trust list that root signs for it, and passes that issuer signs."""

import os
import time
from dataclasses import dataclass, field, replace
from functools import cached_property

from nacl.signing import SigningKey

from protocol.pass_v1 import PassClaims, encode_pass
from protocol.trust import (
    PASS_KINDS,
    IssuerKey,
    TrustList,
    open_trust_list,
    root_keyring,
    sign_trust_list,
)

ISSUER = "VN-HN"
DAY = 86400


@dataclass
class Pki:
    """Keys plus a clock reading (`now`) that trust lists and passes are issued from.

    The trust list's defaults (version 1, issued a minute before `now`, valid 30 days) can be
    changed per instance, e.g. a stale one for trust_stale tests."""

    now: int = field(default_factory=lambda: int(time.time()))
    root: SigningKey = field(default_factory=SigningKey.generate)
    issuer: SigningKey = field(default_factory=SigningKey.generate)
    issuer_kinds: tuple[str, ...] = PASS_KINDS
    trust_version: int = 1
    trust_issued_at: int | None = None  # None: now - 60
    trust_expires_at: int | None = None  # None: issued_at + 30 days

    @property
    def root_hex(self) -> str:
        return bytes(self.root.verify_key).hex()

    @property
    def keyring(self) -> dict[bytes, bytes]:
        return root_keyring([bytes(self.root.verify_key)])

    def trust_list(
        self,
        version: int | None = None,
        issued_at: int | None = None,
        extra_keys: tuple[SigningKey, ...] = (),
    ) -> bytes:
        """A trust list signed by the root for the issuer key (plus `extra_keys`)."""
        if issued_at is None:
            issued_at = self.now - 60 if self.trust_issued_at is None else self.trust_issued_at
        expires_at = self.trust_expires_at
        if expires_at is None:
            expires_at = issued_at + 30 * DAY
        entries = [
            IssuerKey(ISSUER, bytes(k.verify_key), self.issuer_kinds)
            for k in (self.issuer, *extra_keys)
        ]
        return sign_trust_list(
            entries,
            version=self.trust_version if version is None else version,
            issued_at=issued_at,
            expires_at=expires_at,
            root_key=self.root,
        )

    @cached_property
    def trust_bytes(self) -> bytes:
        return self.trust_list()

    @cached_property
    def trust(self) -> TrustList:
        return open_trust_list(self.trust_bytes, self.keyring)

    def claims(self, **changes) -> PassClaims:
        """A declaration issued an hour before `now`, valid 72 h; `changes` override fields."""
        base = PassClaims(
            iss=ISSUER,
            iat=self.now - 3600,
            exp=self.now - 3600 + 3 * DAY,
            cti=os.urandom(16),
            sub=os.urandom(16),
            kind="declaration",
            name="Nguyễn Văn A",
            doc4="6789",
            dob=1985,
        )
        return replace(base, **changes)

    def qr(self, key: SigningKey | None = None, **changes) -> str:
        """The QR text of `claims(**changes)`, signed by `key` (default: the issuer)."""
        return encode_pass(self.claims(**changes), key or self.issuer)

    def make_pass(
        self,
        n: int = 0,
        *,
        kind: str = "declaration",
        iat: int | None = None,
        key: SigningKey | None = None,
    ) -> str:
        """The `n`-th person's pass: distinct name, issued at `iat` (default an hour ago)."""
        iat = self.now - 3600 if iat is None else iat
        return self.qr(
            key,
            iat=iat,
            exp=iat + 3 * DAY,
            kind=kind,
            name=f"Nguyen Van {n}",
            doc4="1234",
            dob=1980,
        )
