"""The central's copy of the signed documents ops publishes once for every site.

`chot provision publish` PUTs each document here (operator token with role `ops`); gateways
GET the index of what exists for them and fetch only what is newer than what they hold. The
central verifies every document against the pinned ops root keys and refuses a rollback (an
older version, or a version reused with other content) exactly as a gateway or a unit does:
the central is a relay, never a signer, so a compromised central can withhold documents but
never forge or roll one back.

Names: `trust`, `revocations`, `dcc-trust` (scope `_all`: every site), and per site
`registry` and `config.<device>` (scope = the site id).
"""

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from central.store import Store
from protocol.dcc_trust import DCC_TRUST_TYPE
from protocol.documents import SignedDocument, check_newer, open_document
from protocol.ids import is_valid_id
from protocol.reasons import ProtocolError, Reason
from protocol.registry_document import REGISTRY_TYPE, registry_from_document
from protocol.trust import CONFIG_TYPE, REVOCATION_TYPE, TRUST_TYPE

ALL_SITES = "_all"  # not a valid site id (ids start with a letter or digit)
GLOBAL_NAMES = {"trust": TRUST_TYPE, "revocations": REVOCATION_TYPE, "dcc-trust": DCC_TRUST_TYPE}
CONFIG_PREFIX = "config."


@dataclass(frozen=True)
class DocumentRef:
    """One published document, without its bytes (what the index lists)."""

    scope: str
    name: str
    typ: str
    version: int

    def to_json(self) -> dict:
        return {"scope": self.scope, "name": self.name, "typ": self.typ, "version": self.version}


@dataclass(frozen=True)
class Published:
    ref: DocumentRef
    changed: bool  # False: this very document was already the newest


def expected_type(scope: str, name: str) -> str:
    """Which document type a (scope, name) holds; ValueError for a name that is not ours."""
    if scope == ALL_SITES and name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name]
    if is_valid_id(scope) and name == "registry":
        return REGISTRY_TYPE
    device = name.removeprefix(CONFIG_PREFIX)
    if is_valid_id(scope) and name.startswith(CONFIG_PREFIX) and is_valid_id(device):
        return CONFIG_TYPE
    raise ValueError(f"no document {name!r} in scope {scope!r}")


def verify(scope: str, name: str, data: bytes, keyring: Mapping[bytes, bytes]) -> SignedDocument:
    """Signature, type and scope of a document offered for (scope, name)."""
    doc = open_document(data, expected_type(scope, name), keyring)
    if doc.typ == REGISTRY_TYPE:
        registry_from_document(doc, scope)  # the body names this site and parses
    if doc.typ == CONFIG_TYPE:
        device = doc.body.get("dev") or doc.body.get("device")
        if device != name.removeprefix(CONFIG_PREFIX):
            raise ProtocolError(Reason.BAD_CLAIMS, f"config is for device {device!r}")
    return doc


class DocumentStore:
    """Documents table access on either backend (queries with `:name` parameters)."""

    def __init__(self, store: Store, keyring: Mapping[bytes, bytes]) -> None:
        self.store = store
        self.keyring = keyring

    def put(self, scope: str, name: str, data: bytes, *, by: str) -> Published:
        """Verify and keep it if newer. Raises ValueError (unknown name) or ProtocolError
        (bad signature, wrong type, rollback)."""
        doc = verify(scope, name, data, self.keyring)
        ref = DocumentRef(scope, name, doc.typ, doc.version)
        params = {
            "scope": scope,
            "name": name,
            "typ": doc.typ,
            "version": doc.version,
            "raw": doc.raw,
            "at": int(time.time() * 1000),
            "by": by,
        }
        # one statement decides under concurrency: only a strictly newer version replaces
        changed = self.store.execute(
            "INSERT INTO documents (scope, name, typ, version, raw, published_at, published_by)"
            " VALUES (:scope, :name, :typ, :version, :raw, :at, :by)"
            " ON CONFLICT (scope, name) DO UPDATE SET typ = excluded.typ,"
            " version = excluded.version, raw = excluded.raw,"
            " published_at = excluded.published_at, published_by = excluded.published_by"
            " WHERE documents.version < excluded.version",
            params,
        )
        if changed:
            return Published(ref, True)
        current = self.get(scope, name)
        current_doc = open_document(current[1], doc.typ, self.keyring) if current else None
        check_newer(doc, current_doc)  # raises rollback unless it is the very same document
        return Published(ref, False)

    def get(self, scope: str, name: str) -> tuple[int, bytes] | None:
        """(version, signed bytes) of the newest, read together."""
        rows = self.store.fetch(
            "SELECT version, raw FROM documents WHERE scope = :scope AND name = :name",
            {"scope": scope, "name": name},
        )
        return (int(rows[0]["version"]), bytes(rows[0]["raw"])) if rows else None

    def version(self, scope: str, name: str) -> int | None:
        rows = self.store.fetch(
            "SELECT version FROM documents WHERE scope = :scope AND name = :name",
            {"scope": scope, "name": name},
        )
        return int(rows[0]["version"]) if rows else None

    def index(self, site: str) -> list[DocumentRef]:
        """What a gateway of `site` may fetch: the global documents and its site's."""
        rows = self.store.fetch(
            "SELECT scope, name, typ, version FROM documents"
            " WHERE scope = :all OR scope = :site ORDER BY scope, name",
            {"all": ALL_SITES, "site": site},
        )
        return [DocumentRef(r["scope"], r["name"], r["typ"], int(r["version"])) for r in rows]


def index_etag(refs: list[DocumentRef]) -> str:
    """A strong ETag over the index: it changes whenever any listed version does."""
    text = "\n".join(f"{r.scope}/{r.name}@{r.version}" for r in refs)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def version_etag(version: int) -> str:
    return f'"v{version}"'
