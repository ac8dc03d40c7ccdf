"""A tiny PKI for protocol tests: an ops root key, an issuer key, a trust list, a good pass."""

import os
from dataclasses import dataclass, replace

import pytest
from nacl.signing import SigningKey

from protocol.pass_v1 import PassClaims, encode_pass
from protocol.trust import IssuerKey, TrustList, open_trust_list, root_keyring, sign_trust_list

NOW = 1_700_000_000
ISSUER = "VN-HN"


@dataclass
class Pki:
    root: SigningKey
    issuer: SigningKey
    trust_bytes: bytes
    trust: TrustList
    keyring: dict[bytes, bytes]

    def claims(self, **changes) -> PassClaims:
        base = PassClaims(
            iss=ISSUER,
            iat=NOW - 3600,
            exp=NOW - 3600 + 72 * 3600,
            cti=os.urandom(16),
            sub=os.urandom(16),
            kind="declaration",
            name="Nguyễn Văn A",
            doc4="6789",
            dob=1985,
        )
        return replace(base, **changes)

    def qr(self, key: SigningKey | None = None, **changes) -> str:
        return encode_pass(self.claims(**changes), key or self.issuer)


def make_pki(*, trust_version: int = 1, trust_exp: int = NOW + 7 * 86400) -> Pki:
    root, issuer = SigningKey.generate(), SigningKey.generate()
    entry = IssuerKey(ISSUER, bytes(issuer.verify_key), ("declaration", "vaccination"))
    raw = sign_trust_list(
        [entry], version=trust_version, issued_at=NOW - 86400, expires_at=trust_exp, root_key=root
    )
    keyring = root_keyring([bytes(root.verify_key)])
    return Pki(root, issuer, raw, open_trust_list(raw, keyring), keyring)


@pytest.fixture
def pki() -> Pki:
    return make_pki()
