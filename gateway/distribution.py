"""Distribution: the signed documents ops hands the gateway, republished retained on MQTT.

Trust lists, revocation lists and per-device configs arrive as files in a watched folder (or
through `offer`). Each is verified against the pinned ops root keys and must be newer than the
one already published on its topic (`protocol.documents.check_newer`: an older version or a
reused version with new content is a rollback and is refused). Adopted documents are kept in
the store, so they are republished after a restart or a broker that lost its retained state.
Scanners verify every document themselves too; the gateway's check keeps a bad file from ever
reaching them and tells ops at once.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.store import Store
from protocol import topics
from protocol.dcc_trust import DCC_TRUST_TYPE, dcc_trust_from_document, dcc_trust_topic
from protocol.documents import SignedDocument, check_newer, open_document
from protocol.ids import require_id
from protocol.reasons import ProtocolError, Reason
from protocol.trust import CONFIG_TYPE, REVOCATION_TYPE, TRUST_TYPE, root_keyring

log = logging.getLogger(__name__)

DOCUMENT_TYPES = (TRUST_TYPE, REVOCATION_TYPE, CONFIG_TYPE, DCC_TRUST_TYPE)
FILE_SUFFIXES = (".cbor", ".cose", ".bin")


@dataclass(frozen=True)
class Adopted:
    topic: str
    typ: str
    version: int
    changed: bool  # False: the very same document was already published


class Distributor:
    def __init__(
        self,
        store: Store,
        site: str,
        root_keys: list[bytes],
        publish: Callable[[str, bytes], None] | None = None,
        documents_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.site = site
        self.keyring = root_keyring(root_keys)
        self.publish = publish
        self.documents_dir = Path(documents_dir) if documents_dir else None
        self._seen: dict[str, tuple[float, int]] = {}  # file name -> (mtime, size)

    def open(self, data: bytes) -> SignedDocument:
        """Verify against the root keys, whichever of the known types it is."""
        for typ in DOCUMENT_TYPES:
            try:
                return open_document(data, typ, self.keyring)
            except ProtocolError as exc:
                if exc.reason is not Reason.WRONG_TYPE:
                    raise
        raise ProtocolError(Reason.WRONG_TYPE, "not a trust list, revocation list or config")

    def topic_for(self, doc: SignedDocument, device: str | None = None) -> str:
        if doc.typ == TRUST_TYPE:
            return topics.trust_topic(self.site)
        if doc.typ == DCC_TRUST_TYPE:
            dcc_trust_from_document(doc)  # every DSC must parse before units see the list
            return dcc_trust_topic(self.site)
        if doc.typ == REVOCATION_TYPE:
            return topics.revocations_topic(self.site)
        site = doc.body.get("site")
        if site is not None and site != self.site:
            raise ProtocolError(Reason.WRONG_TYPE, f"config is for site {site}")
        device = doc.body.get("device") or device
        if not isinstance(device, str):
            raise ProtocolError(Reason.BAD_CLAIMS, "config names no device")
        return topics.config_topic(self.site, require_id(device, "device"))

    def offer(self, data: bytes, *, device: str | None = None, actor: str = "ops") -> Adopted:
        """Verify, check it is newer, store and publish retained. Raises ProtocolError
        (bad signature, unknown key, rollback, ...) and publishes nothing in that case."""
        doc = self.open(data)
        topic = self.topic_for(doc, device)
        current = self._current(topic)
        if not check_newer(doc, current):
            return Adopted(topic, doc.typ, doc.version, False)
        self.store.save_document(topic, doc.typ, doc.version, doc.raw)
        self.store.add_audit(actor, "publish_document", f"{doc.typ} v{doc.version} -> {topic}")
        log.info("adopted %s version %d for %s", doc.typ, doc.version, topic)
        if self.publish:
            self.publish(topic, doc.raw)
        return Adopted(topic, doc.typ, doc.version, True)

    def current_version(self, topic: str) -> int | None:
        """Version of the document published on `topic` (the fetcher asks only for newer)."""
        for item in self.store.documents():
            if item["topic"] == topic:
                return int(item["version"])
        return None

    def _current(self, topic: str) -> SignedDocument | None:
        for item in self.store.documents():
            if item["topic"] == topic:
                return open_document(item["raw"], item["typ"], self.keyring)
        return None

    def republish_all(self) -> int:
        """On start and on every broker (re)connect: retained state may have been lost."""
        docs = self.store.documents()
        if self.publish:
            for item in docs:
                self.publish(item["topic"], item["raw"])
        return len(docs)

    def scan_folder(self) -> list[Adopted]:
        """Offer new or changed files of the watched folder. A config file may name its
        device as `<device>.config.cbor` when the document body does not."""
        if self.documents_dir is None or not self.documents_dir.is_dir():
            return []
        adopted = []
        for path in sorted(self.documents_dir.iterdir()):
            if path.suffix not in FILE_SUFFIXES or not path.is_file():
                continue
            stat = path.stat()
            key = (stat.st_mtime, stat.st_size)
            if self._seen.get(path.name) == key:
                continue
            self._seen[path.name] = key
            device = path.name.split(".config.")[0] if ".config." in path.name else None
            try:
                adopted.append(self.offer(path.read_bytes(), device=device, actor="folder"))
            except (ProtocolError, ValueError) as exc:
                log.error("document %s refused: %s", path.name, exc)
                self.store.bump({f"document_refused.{getattr(exc, 'reason', 'bad')}": 1})
        return adopted
