"""`chot provision publish`: hand the newest signed documents to the central, once, for
every site. Gateways fetch what is newer on their own schedule (gateway/fetcher.py) and
republish it to their units, so nothing is ever copied into a gateway's folder by hand.

What goes: the trust list, the revocation list, the DCC trust list when the home has one
(scope `_all`), and per site its signed registry and any per-unit configs in HOME/configs/
(`<device>.cose`). The site registry is signed here, with the next version, only when the
signers it lists changed since the last one (HOME/sites/<SITE>/registry.cose keeps it).

The central verifies each document against the root keys and refuses a rollback; so does every
gateway and unit after it. The ops credential is a central operator token with role `ops`.
"""

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from common.i18n import N_, Phrase
from protocol.documents import open_document
from protocol.registry_document import REGISTRY_TYPE, registry_from_document, sign_site_registry
from provisioning.errors import OpsError
from provisioning.home import OpsHome

ALL_SITES = "_all"  # central/documents.py's scope for every site
GLOBAL_FILES = {
    "trust": "trust.cose",
    "revocations": "revocations.cose",
    "dcc-trust": "dcc-trust.cose",
}
REGISTRY_FILE = "registry.cose"
REGISTRY_LIFETIME_S = 10 * 365 * 86400  # freshness comes from the revocation list, not this


@dataclass(frozen=True)
class PublishedDocument:
    scope: str
    name: str
    version: int
    changed: bool  # False: the central already had this very document
    error: str | None = None


def signed_site_registry(home: OpsHome, site: str, *, now: int | None = None) -> bytes:
    """The site's signed registry, re-signed with the next version when its signers changed."""
    path = home.site_dir(site) / REGISTRY_FILE
    wanted = home.registry().for_site(site)
    current_version = 0
    if path.exists():
        doc = open_document(path.read_bytes(), REGISTRY_TYPE, home.root_keyring())
        current_version = doc.version
        if registry_from_document(doc, site).to_json() == wanted.to_json():
            return doc.raw
    issued = int(time.time()) if now is None else now
    data = sign_site_registry(
        wanted,
        site,
        version=current_version + 1,
        issued_at=issued,
        expires_at=issued + REGISTRY_LIFETIME_S,
        root_key=home.root_signing_key(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def documents_to_publish(home: OpsHome) -> list[tuple[str, str, bytes]]:
    """(scope, name, signed bytes) of every document the sites should have."""
    out = []
    for name, file_name in GLOBAL_FILES.items():
        path = home.path / file_name
        if path.is_file():
            out.append((ALL_SITES, name, path.read_bytes()))
    registry = home.registry()
    for site in sorted(home.state.sites):
        out.append((site, "registry", signed_site_registry(home, site)))
    configs = home.path / "configs"
    if configs.is_dir():
        for path in sorted(configs.glob("*.cose")):
            signer = registry.signers.get(path.stem)
            if signer is not None and not signer.revoked:
                out.append((signer.site, f"config.{signer.id}", path.read_bytes()))
    return out


def publish(
    home: OpsHome,
    central_url: str,
    token: str,
    *,
    verify: bool | str = True,
    client: httpx.Client | None = None,
) -> list[PublishedDocument]:
    """PUT every document to the central; an error on one does not stop the others."""
    http = client or httpx.Client(base_url=central_url, verify=verify, timeout=30.0)
    results = []
    try:
        for scope, name, data in documents_to_publish(home):
            results.append(_put(http, scope, name, data, token))
    finally:
        if client is None:
            http.close()
    return results


def _put(http: httpx.Client, scope: str, name: str, data: bytes, token: str) -> PublishedDocument:
    try:
        resp = http.put(
            f"/api/v1/documents/{scope}/{name}",
            content=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/cose"},
        )
    except httpx.HTTPError as exc:
        raise OpsError(f"central unreachable: {type(exc).__name__}: {exc}") from None
    if resp.status_code in (401, 403):
        raise OpsError(f"central refused the ops token ({resp.status_code})")
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        return PublishedDocument(scope, name, 0, False, f"HTTP {resp.status_code}: {detail}")
    answer = resp.json()
    return PublishedDocument(scope, name, int(answer["version"]), bool(answer["changed"]))


PUBLISHED = N_("{document}: version {version} published")
UNCHANGED = N_("{document}: version {version} unchanged (the centre already has it)")
REFUSED = N_("{document}: refused by the centre: {error}")


def report(results: list[PublishedDocument]) -> tuple[dict, list[Phrase], int]:
    """JSON data, lines for people (translated where printed) and the exit code (1 when any
    document was refused)."""
    lines = [
        Phrase(
            REFUSED if r.error else PUBLISHED if r.changed else UNCHANGED,
            {"document": f"{r.scope}/{r.name}", "version": r.version, "error": r.error},
        )
        for r in results
    ]
    failed = any(r.error for r in results)
    return {"documents": [asdict(r) for r in results], "ok": not failed}, lines, int(failed)


# --- command line (registered by provisioning/cli.py, which passes its helpers in) -----------

TOKEN_ENV = "CHOT_OPS_TOKEN"
HOME_ENV = "CHOT_HOME"  # as provisioning.cli (not imported back)


def add_command(psub, leaf, output) -> None:
    """`chot provision publish --central URL [--token-file F] [--ca-file F]`."""

    def run(args: argparse.Namespace):
        path = args.home or os.environ.get(HOME_ENV)
        if not path:
            raise ValueError(f"--home DIR (or ${HOME_ENV}) is required")
        if args.token_file:
            token = args.token_file.read_text().strip()
        else:
            token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise ValueError(f"--token-file FILE (or ${TOKEN_ENV}) is required")
        verify: bool | str = str(args.ca_file) if args.ca_file else True
        data, lines, code = report(publish(OpsHome(path), args.central, token, verify=verify))
        return output(data, lines, code)

    p = leaf(psub, "publish", "send the newest signed documents to the central", run)
    p.add_argument("--central", required=True, help="central base URL, e.g. https://central:8470")
    p.add_argument("--token-file", type=Path, help=f"ops token file (default ${TOKEN_ENV})")
    p.add_argument("--ca-file", type=Path, help="CA that signed the central's certificate")
