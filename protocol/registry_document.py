"""The site registry as a root-signed document (typ chot-registry), so it can travel
ops home -> central -> gateway like the trust and revocation lists, verified at every hop.

Body: `{"site": tstr, "signers": {id: {"role": tstr, "pk": bstr(32), "lane"?: tstr,
"revoked"?: true}}}`. Public data only: keys, lanes, revocations. No token or password ever
goes in it (the gateway derives the units' broker logins itself, see
gateway/broker_admin.py); the central keeps the gateways' token hashes in its own registry.
"""

from nacl.signing import SigningKey

from protocol.documents import SignedDocument, sign_document
from protocol.ids import require_id
from protocol.reasons import ProtocolError, Reason
from protocol.registry import Registry, Signer

REGISTRY_TYPE = "chot-registry"


def sign_site_registry(
    registry: Registry,
    site: str,
    *,
    version: int,
    issued_at: int,
    expires_at: int,
    root_key: SigningKey,
) -> bytes:
    """The signers of `site` (revoked ones included: a gateway must learn the revocation)."""
    signers = {}
    for signer in registry.for_site(require_id(site, "site")):
        entry: dict = {"role": signer.role, "pk": signer.public_key}
        if signer.lane:
            entry["lane"] = signer.lane
        if signer.revoked:
            entry["revoked"] = True
        signers[signer.id] = entry
    body = {"site": site, "signers": signers}
    return sign_document(REGISTRY_TYPE, version, issued_at, expires_at, body, root_key)


def registry_from_document(doc: SignedDocument, site: str) -> Registry:
    """The site's Registry from a verified document; refuses another site's or a bad body."""
    if doc.typ != REGISTRY_TYPE:
        raise ProtocolError(Reason.WRONG_TYPE, f"expected {REGISTRY_TYPE}, got {doc.typ}")
    if doc.body.get("site") != site:
        raise ProtocolError(Reason.BAD_CLAIMS, f"registry is for site {doc.body.get('site')!r}")
    signers = doc.body.get("signers")
    if not isinstance(signers, dict):
        raise ProtocolError(Reason.BAD_CLAIMS, "registry signers must be a map")
    registry = Registry()
    try:
        for signer_id, item in signers.items():
            registry.add(
                Signer(
                    id=signer_id,
                    site=site,
                    role=item["role"],
                    public_key=bytes(item["pk"]),
                    lane=item.get("lane"),
                    revoked=item.get("revoked") is True,
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(Reason.BAD_CLAIMS, f"registry entry refused: {exc}") from None
    return registry
