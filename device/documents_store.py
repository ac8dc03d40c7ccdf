"""The signed documents a scanner holds: trust list, revocation list and its own config.

Each arrives signed by a pinned ops root key (in the install bundle, or retained on MQTT). A
document is adopted only when its signature verifies and ``check_newer`` accepts it (a lower
or reused version is a rollback and is refused). The adopted bytes are written to
``state_dir/<kind>.cose`` atomically (temp file, fsync, rename, fsync of the folder), so after
a power cut the device restarts with the newest document it ever accepted, never an older one
and never half a file.
"""

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.dcc_policy import DccPolicy
from protocol.dcc_trust import DCC_TRUST_TYPE, DccTrust, dcc_trust_from_document
from protocol.documents import SignedDocument, check_newer, open_document
from protocol.reasons import ProtocolError, Reason
from protocol.trust import (
    CONFIG_TYPE,
    REVOCATION_TYPE,
    TRUST_TYPE,
    RevocationList,
    TrustList,
    revocation_list_from_document,
    trust_list_from_document,
)

log = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "trust": TRUST_TYPE,
    "revocations": REVOCATION_TYPE,
    "config": CONFIG_TYPE,
    "dcc-trust": DCC_TRUST_TYPE,  # DSCs for EU DCCs (protocol/dcc_trust.py)
}


@dataclass(frozen=True)
class Offer:
    """The outcome of offering a document: adopted (newer), or unchanged (the same one)."""

    kind: str
    adopted: bool
    document: SignedDocument


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DocumentStore:
    """Current documents by kind ("trust", "revocations", "config"), persisted in state_dir."""

    def __init__(self, state_dir: Path, root_keys: Mapping[bytes, bytes], device_id: str) -> None:
        self.state_dir = Path(state_dir)
        self.root_keys = dict(root_keys)
        self.device_id = device_id
        self._current: dict[str, SignedDocument] = {}
        for kind in KINDS:
            path = self.path(kind)
            if path.is_file():
                try:
                    self._current[kind] = self._open(kind, path.read_bytes())
                except ProtocolError as exc:  # e.g. the root key was rotated
                    log.error("device %s: stored %s refused: %s", device_id, kind, exc)

    def path(self, kind: str) -> Path:
        return self.state_dir / f"{kind}.cose"

    def _open(self, kind: str, data: bytes) -> SignedDocument:
        doc = open_document(data, KINDS[kind], self.root_keys)
        if kind == "config":
            target = doc.body.get("device")
            if target != self.device_id:
                raise ProtocolError(Reason.WRONG_TYPE, f"config is for device {target!r}")
            parse_config_policy(doc.body)  # reject a malformed config before adopting it
        elif kind == "trust":
            trust_list_from_document(doc)
        elif kind == "dcc-trust":
            dcc_trust_from_document(doc)
        else:
            revocation_list_from_document(doc)
        return doc

    def offer(self, kind: str, data: bytes) -> Offer:
        """Verify, refuse rollbacks, persist atomically. Raises ProtocolError with the reason."""
        if kind not in KINDS:
            raise ValueError(f"unknown document kind {kind!r}")
        doc = self._open(kind, bytes(data))
        current = self._current.get(kind)
        if not check_newer(doc, current):
            return Offer(kind, False, current or doc)
        atomic_write(self.path(kind), doc.raw)
        self._current[kind] = doc
        log.info("device %s: adopted %s version %d", self.device_id, kind, doc.version)
        return Offer(kind, True, doc)

    def offer_file(self, kind: str, path: Path) -> Offer | None:
        """Seed from an install-bundle file: adopted only when newer than what state holds."""
        try:
            return self.offer(kind, Path(path).read_bytes())
        except ProtocolError as exc:
            if exc.reason is Reason.ROLLBACK:
                return None  # state already holds a newer one: normal after an update
            raise

    def current(self, kind: str) -> SignedDocument | None:
        return self._current.get(kind)

    def trust_list(self) -> TrustList | None:
        doc = self._current.get("trust")
        return trust_list_from_document(doc) if doc else None

    def dcc_trust(self) -> DccTrust | None:
        doc = self._current.get("dcc-trust")
        return dcc_trust_from_document(doc) if doc else None

    def revocation_list(self) -> RevocationList | None:
        doc = self._current.get("revocations")
        return revocation_list_from_document(doc) if doc else None

    def newest_issued_at(self) -> int | None:
        times = [doc.issued_at for doc in self._current.values()]
        return max(times) if times else None


POLICY_KEYS = ("allowed_kinds", "debounce_s", "duplicate_window_s", "dcc")


def parse_config_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A config document body: {"device": id, "policy": {allowed_kinds?, debounce_s?,
    duplicate_window_s?, dcc?}}. Returns the policy overrides (`dcc` as a DccPolicy); unknown
    keys are refused."""
    policy = body.get("policy", {})
    if not isinstance(policy, dict) or set(policy) - set(POLICY_KEYS):
        raise ProtocolError(Reason.BAD_CLAIMS, f"config policy keys must be in {POLICY_KEYS}")
    kinds = policy.get("allowed_kinds")
    if kinds is not None and (
        not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)
    ):
        raise ProtocolError(Reason.BAD_CLAIMS, "allowed_kinds must be a list of text")
    for key in ("debounce_s", "duplicate_window_s"):
        value = policy.get(key)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ProtocolError(Reason.BAD_CLAIMS, f"{key} must be a non-negative number")
    values = dict(policy)
    if "dcc" in values:  # EU DCC rules (protocol/dcc_policy.py) as a map
        try:
            values["dcc"] = DccPolicy.from_mapping(values["dcc"])
        except (ValueError, TypeError) as exc:
            raise ProtocolError(Reason.BAD_CLAIMS, f"dcc policy: {exc}") from None
    return values
