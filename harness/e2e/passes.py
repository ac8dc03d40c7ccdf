"""The passes people hold up at an e2e site's units, and what each unit must decide for them.

Made before the units start, so the revocation list that names the revoked ones is installed
in every bundle and at the gateway.
"""

from dataclasses import dataclass

from nacl.signing import SigningKey

from chot.system import HOUR, ProvisionedSite, forged_pass
from protocol.pass_v1 import decode_pass
from protocol.reasons import ProtocolError


@dataclass(frozen=True)
class Scan:
    """One presentation and what the unit must decide for it (with a synced clock)."""

    text: str
    category: str  # valid, expired, forged, revoked, not_chot
    verdict: str
    reason: str


EXPECTED = {
    "valid": ("pass", "ok"),
    "expired": ("fail", "expired"),
    "forged": ("fail", "unknown_kid"),  # signed by an issuer nobody trusts
    "revoked": ("fail", "revoked"),
    "not_chot": ("fail", "not_chot"),
}
BAD = ("expired", "forged", "revoked", "not_chot")


def make_scans(site: ProvisionedSite, per_device: list[int], *, now: int) -> list[list[Scan]]:
    """Distinct passes for each unit: mostly valid, every 10th one of the bad kinds. Revoked
    ones are added to a newly signed revocation list, installed before the units start."""
    home = site.home
    key = home.issuer_signing_key()
    stranger = SigningKey.generate()
    out: list[list[Scan]] = []
    revoked_refs: list[str] = []
    serial = 0
    for count in per_device:
        scans = []
        for i in range(count):
            serial += 1
            category = BAD[(i // 10) % len(BAD)] if i % 10 == 9 else "valid"
            doc = f"{serial:012d}"
            if category == "valid":
                text, _ = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 600, _key=key
                )
            elif category == "expired":
                text, _ = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 80 * HOUR, _key=key
                )
            elif category == "revoked":
                text, claims = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 600, _key=key
                )
                revoked_refs.append(claims.pass_ref.hex())
            elif category == "forged":
                text = forged_pass(stranger, now=now)
            else:
                text = f"https://example.vn/menu?table={serial}"
            scans.append(Scan(text, category, *EXPECTED[category]))
        out.append(scans)
    if revoked_refs:
        home.state.revoked_pass_refs = sorted({*home.state.revoked_pass_refs, *revoked_refs})
        home.save()
        home.sign_revocation_list(now=now)
        install_documents(site)
    return out


def install_documents(site: ProvisionedSite) -> None:
    """Copy the home's current trust and revocation lists into every bundle (as an ops team
    would before deploying) and into the gateway's documents folder."""
    folders = [cfg.parent for cfg in site.device_configs] + [
        site.gateway_config.parent / "documents"
    ]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trust.cose").write_bytes(site.home.trust_list_bytes())
        (folder / "revocations.cose").write_bytes(site.home.revocation_list_bytes())


def pass_ref_of(text: str) -> bytes | None:
    """The pass reference a unit reports for a text (None when it is not a chot pass)."""
    try:
        return decode_pass(text).claims.pass_ref
    except ProtocolError:
        return None
