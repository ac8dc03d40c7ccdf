"""Fetcher: the signed documents ops published at the central -> this gateway, by itself.

Every `documents_poll_s` (jittered by +-50 % so a country's gateways do not ask in lockstep)
the gateway GETs the central's index of its site's documents with the ETag it last saw (304:
nothing new), then fetches only what is newer than what it holds, each with `If-None-Match:
"v<held version>"`. Failures back off with full jitter like the forwarder, and the schedule
simply goes on: a site offline for days asks again on reconnect and catches up in one round,
newest versions only.

Every document is verified here again (root keys, type, rollback) before anything else sees
it: lists and unit configs go through the Distributor (stored, republished retained to the
units, who verify once more); the site registry is adopted by `SiteRegistryFile`, which keeps
it beside the store (the bundle's folder may be read-only) and which ingest reads.
"""

import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.central_http import central_client, full_jitter_s
from gateway.distribution import Distributor
from protocol import topics
from protocol.dcc_trust import dcc_trust_topic
from protocol.documents import SignedDocument, check_newer, open_document
from protocol.ids import is_valid_id
from protocol.reasons import ProtocolError
from protocol.registry import Registry
from protocol.registry_document import REGISTRY_TYPE, registry_from_document

log = logging.getLogger(__name__)

INDEX_PATH = "/api/v1/documents"
ALL_SITES = "_all"  # central/documents.py's scope for every site
CONFIG_PREFIX = "config."
STATUS_FILE = "fetcher.json"  # STATE/fetcher.json: the last round, for `chot gateway status`


class FetchError(Exception):
    """This round failed; what was adopted stays adopted, the rest is asked again later."""


class SiteRegistryFile:
    """The registry ingest reads: STATE/registry.json, from the newest signed registry
    (STATE/registry.cose keeps it for its version), else a copy of the bundle's file."""

    def __init__(self, state_dir: Path, bundle_file: Path, site: str, keyring: dict) -> None:
        self.path = Path(state_dir) / "registry.json"
        self.signed_path = Path(state_dir) / "registry.cose"
        self.bundle_file = Path(bundle_file)
        self.site = site
        self.keyring = keyring
        self._bundle_stamp: tuple[int, int] | None = None

    def current_document(self) -> SignedDocument | None:
        if not self.signed_path.exists():
            return None
        return open_document(self.signed_path.read_bytes(), REGISTRY_TYPE, self.keyring)

    def version(self) -> int | None:
        doc = self.current_document()
        return doc.version if doc else None

    def follow_bundle(self) -> bool:
        """Until a signed registry arrives, the bundle's file (refreshed by ops, the old way)
        is copied in whenever it changes. True when it was copied."""
        if self.signed_path.exists() or not self.bundle_file.exists():
            return False
        stat = self.bundle_file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._bundle_stamp and self.path.exists():
            return False
        self._bundle_stamp = stamp
        tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.copyfile(self.bundle_file, tmp)
        tmp.replace(self.path)
        return True

    def adopt(self, data: bytes) -> Registry | None:
        """Verify and keep a newer signed registry; None when it is the one held. Raises
        ProtocolError for a bad signature, another site's registry or a rollback."""
        doc = open_document(data, REGISTRY_TYPE, self.keyring)
        registry = registry_from_document(doc, self.site)
        if not check_newer(doc, self.current_document()):
            return None
        _replace(self.path, (json.dumps(registry.to_json(), indent=2) + "\n").encode())
        _replace(self.signed_path, doc.raw)
        log.info(
            "adopted site registry version %d (%d signers)", doc.version, len(registry.signers)
        )
        return registry


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass
class FetchStats:
    rounds: int = 0
    adopted: int = 0
    refused: int = 0
    failures: int = 0  # consecutive failed rounds
    failed_rounds: int = 0  # in all
    last_error: str | None = None
    last_round_at: float | None = None  # unix time of the last round, good or not
    last_ok_at: float | None = None  # ... of the last round that reached the central
    versions: dict[str, int] = field(default_factory=dict)  # "scope/name" -> version held


class DocumentFetcher:
    def __init__(
        self,
        url: str,
        gateway_id: str,
        token: str,
        distributor: Distributor,
        registry_file: SiteRegistryFile,
        *,
        on_registry: Callable[[Registry], None] | None = None,
        status_dir: Path | None = None,
        poll_s: float = 60.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        self.distributor = distributor
        self.site = distributor.site
        self.registry_file = registry_file
        self.on_registry = on_registry
        self.poll_s = poll_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stats = FetchStats()
        self.status_path = Path(status_dir) / STATUS_FILE if status_dir else None
        self._index_etag: str | None = None
        self._http = central_client(
            gateway_id,
            token,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            verify=verify,
            base_url=url.rstrip("/"),
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one round -------------------------------------------------------------------------

    def held_version(self, scope: str, name: str) -> int | None:
        if scope == self.site and name == "registry":
            return self.registry_file.version()
        topic = self.topic_for(scope, name)
        return self.distributor.current_version(topic) if topic else None

    def topic_for(self, scope: str, name: str) -> str | None:
        """The retained topic a document goes to; None for one this gateway does not serve."""
        if scope == ALL_SITES:
            return {
                "trust": topics.trust_topic(self.site),
                "revocations": topics.revocations_topic(self.site),
                "dcc-trust": dcc_trust_topic(self.site),
            }.get(name)
        device = name.removeprefix(CONFIG_PREFIX)
        if scope == self.site and name.startswith(CONFIG_PREFIX) and is_valid_id(device):
            return topics.config_topic(self.site, device)
        return None

    def fetch_once(self) -> int:
        """One round; returns how many documents were adopted. Raises FetchError."""
        self.stats.rounds += 1
        headers = {"If-None-Match": self._index_etag} if self._index_etag else {}
        resp = self._get(INDEX_PATH, headers)
        if resp.status_code == 304:
            return 0
        try:
            refs = [
                (str(d["scope"]), str(d["name"]), int(d["version"]))
                for d in resp.json()["documents"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise FetchError(f"central index not understood: {exc}") from None
        adopted, complete = 0, True
        for scope, name, version in refs:
            held = self.held_version(scope, name)
            if held is not None and held >= version:
                self.stats.versions[f"{scope}/{name}"] = held
                continue
            try:
                adopted += self._fetch_document(scope, name, held)
            except ProtocolError as exc:
                # refused here as everywhere: counted and logged, the others still go
                complete = False
                self.distributor.store.bump({f"document_refused.{exc.reason}": 1})
                self.stats.refused += 1  # after the store: whoever sees this sees the counter
                log.error("document %s/%s v%d from central refused: %s", scope, name, version, exc)
        if complete:
            self._index_etag = resp.headers.get("etag")
        return adopted

    def _fetch_document(self, scope: str, name: str, held: int | None) -> int:
        headers = {"If-None-Match": f'"v{held}"'} if held is not None else {}
        resp = self._get(f"{INDEX_PATH}/{scope}/{name}", headers)
        if resp.status_code == 304:
            return 0
        if scope == self.site and name == "registry":
            registry = self.registry_file.adopt(resp.content)
            if registry is None:
                return 0
            self.stats.versions[f"{scope}/{name}"] = self.registry_file.version() or 0
            if self.on_registry:
                self.on_registry(registry)
            return 1
        if self.topic_for(scope, name) is None:
            return 0
        device = name.removeprefix(CONFIG_PREFIX) if name.startswith(CONFIG_PREFIX) else None
        result = self.distributor.offer(resp.content, device=device, actor="central")
        self.stats.versions[f"{scope}/{name}"] = result.version
        return int(result.changed)

    def _get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            resp = self._http.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise FetchError(f"central unreachable: {type(exc).__name__}") from None
        if resp.status_code not in (200, 304):
            raise FetchError(f"central answered HTTP {resp.status_code} for {path}")
        return resp

    # --- loop ------------------------------------------------------------------------------

    def next_delay_s(self) -> float:
        """Jittered poll after a good round; full-jitter backoff after failed ones."""
        if self.stats.failures:
            return full_jitter_s(self.stats.failures, self.backoff_initial_s, self.backoff_max_s)
        return random.uniform(0.5, 1.5) * self.poll_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-fetcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_round()
            self._stop.wait(self.next_delay_s())

    def run_round(self) -> None:
        """One round with its bookkeeping: counters, and the status file for the CLI."""
        try:
            adopted = self.fetch_once()
            self.stats.adopted += adopted
            self.stats.failures = 0
            self.stats.last_error = None
            self.stats.last_ok_at = time.time()
        except FetchError as exc:
            self._failed(str(exc))
            log.warning("document fetch failed (%d in a row): %s", self.stats.failures, exc)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("document fetcher error")
        self.stats.last_round_at = time.time()
        self._write_status()

    def _failed(self, error: str) -> None:
        self.stats.failures += 1
        self.stats.failed_rounds += 1
        self.stats.last_error = error

    def health(self) -> dict:
        """What /api/status and `chot gateway status` show of the fetcher."""
        s = self.stats
        return {
            "rounds": s.rounds,
            "adopted": s.adopted,
            "refused": s.refused,
            "failures": s.failures,
            "failed_rounds": s.failed_rounds,
            "last_error": s.last_error,
            "last_round_at": s.last_round_at,
            "last_ok_at": s.last_ok_at,
            "poll_s": self.poll_s,
            "versions": dict(sorted(s.versions.items())),
        }

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        try:
            _replace(self.status_path, (json.dumps(self.health(), indent=2) + "\n").encode())
        except OSError as exc:  # a full disk must not stop the fetching
            log.warning("cannot write %s: %s", self.status_path, exc)


def read_fetch_status(state_dir: Path) -> dict | None:
    """The fetcher's last round as the running gateway wrote it (None: it never ran)."""
    try:
        data = json.loads((Path(state_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
