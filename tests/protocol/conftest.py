"""A tiny PKI for protocol tests: an ops root key, an issuer key, a trust list, a good pass."""

import pytest

from harness.pki import ISSUER, Pki

NOW = 1_700_000_000
__all__ = ["ISSUER", "NOW", "Pki", "make_pki"]


def make_pki(*, trust_version: int = 1, trust_exp: int = NOW + 7 * 86400) -> Pki:
    """Keys at the fixed NOW; the issuer may issue declarations and vaccinations only."""
    return Pki(
        now=NOW,
        issuer_kinds=("declaration", "vaccination"),
        trust_version=trust_version,
        trust_issued_at=NOW - 86400,
        trust_expires_at=trust_exp,
    )


@pytest.fixture
def pki() -> Pki:
    return make_pki()
