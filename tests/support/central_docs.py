"""The real central app for gateway tests that fetch from it: its store and document store
set up for a test `Site`, the gateway's run loop in a thread, and ops publishing the site's
signed registry there."""

import threading
from pathlib import Path

from fastapi import FastAPI

from central.api import create_app
from central.backends import open_store
from central.config import CentralConfig, hash_token
from central.documents import DocumentStore
from central.migrate import migrate
from gateway.app import GatewayApp
from protocol.registry_document import sign_site_registry
from protocol.trust import root_keyring
from tests.support.gateway_core import SITE, Site


def central_app(tmp_path: Path, site: Site) -> tuple[FastAPI, DocumentStore]:
    """The central API (gw-a logs in with token tok-a, as the site's config says) over a fresh
    SQLite store, and the document store ops publishes into."""
    registry = site.registry
    registry.set_token("gw-a", "tok-a")
    registry.save(tmp_path / "central-registry.json")
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    config = CentralConfig(
        store=store.url,
        registry=tmp_path / "central-registry.json",
        operators={"ops": {"token_sha256": hash_token("ops"), "roles": ["ops"]}},
        root_public_keys=[bytes(site.root.verify_key).hex()],
    )
    return create_app(config, store), DocumentStore(
        store, root_keyring([bytes(site.root.verify_key)])
    )


def run_in_thread(app: GatewayApp) -> threading.Thread:
    """The gateway's run loop (fetcher included) in a daemon thread; stop with app.stopping."""
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    return thread


def publish_registry(
    docs: DocumentStore, site: Site, *, version: int, issued_at: int, expires_at: int
) -> None:
    """Ops signs the site's registry as it stands now and puts it at the central, where the
    gateway's fetcher picks it up."""
    signed = sign_site_registry(
        site.registry,
        SITE,
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        root_key=site.root,
    )
    docs.put(SITE, "registry", signed, by="ops")
