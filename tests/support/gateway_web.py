"""Test helpers for the status page: a real gateway store, config, users file and the
manual-entry signer wired the way gateway/app.py does it."""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from nacl.signing import SigningKey

from gateway.config import GatewayConfig, parse_config
from gateway.manual import GatewaySigner
from gateway.store import Accepted, Store
from gateway.web import WebContext
from protocol.events import Event
from tests.support.gateway_core import make_event

SITE = "HN-01"
GATEWAY = "gw-a"
OPERATOR, PASSWORD = "alice", "correct horse battery"
# The page must never show these: a pass's personal fields, used as canaries in tests.
CANARY_NAME, CANARY_DOB = "Nguyen Van Canary", "1987-06-05"
DOC4 = "X7Q9"


@dataclass
class WebSite:
    dir: Path
    config: GatewayConfig
    store: Store
    key: SigningKey
    signer: GatewaySigner
    ctx: WebContext

    def scan(
        self,
        dev: str,
        seq: int,
        *,
        lane: str = "lane-1",
        reason: str = "ok",
        verdict: str | None = None,
    ) -> Event:
        """Commit one signed scan event through the store's real write API."""
        raw, event = make_event(
            SigningKey.generate(), dev, seq, lane=lane, reason=reason, ep=None, verdict=verdict
        )
        self.store.commit_batch(
            [
                Accepted(
                    eid=event.eid,
                    dev=dev,
                    seq=seq,
                    typ="scan",
                    t_ms=event.t_ms,
                    raw=raw,
                    verdict=event.verdict,
                    reason=reason,
                    lane=lane,
                    kind=event.kind,
                    clock="synced",
                )
            ]
        )
        return event

    def device_status(self, dev: str, state: str, **health: Any) -> None:
        beat = {
            "t": time.time(),
            "fps": 14.8,
            "decoder_ms": 0.4,
            "outbox_depth": 0,
            "clock": "synced",
            "trust_version": 3,
            **health,
        }
        self.store.commit_batch([], statuses=[(dev, state)], heartbeats=[(dev, beat)])


def write_operator_login(folder: Path, session_secret: str) -> dict[str, str]:
    """Write the one operator account (OPERATOR / PASSWORD) and the session secret a gateway's
    status page needs into `folder`; returns the `web` config keys that point at them. The hash
    is Argon2 at its cheapest, so a test's login takes milliseconds."""
    users = {
        "version": 1,
        "users": {
            OPERATOR: {
                "hash": PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD),
                "created": int(time.time()),
            }
        },
    }
    (folder / "operators.json").write_text(json.dumps(users))
    (folder / "session.secret").write_text(session_secret)
    return {
        "users_file": str(folder / "operators.json"),
        "session_secret_file": str(folder / "session.secret"),
    }


def health_for(store: Store, config: GatewayConfig):
    """What GatewayApp.health() reports, minus the MQTT and forwarder parts."""

    def health() -> dict[str, Any]:
        alerts = store.alerts()
        if store.open_gaps():
            alerts.append("sequence_gaps")
        return {
            "gateway": config.id,
            "site": config.site,
            "ingest_rate_per_s": store.ingest_rate(60),
            "store_depth": store.depth(),
            "forward_lag_s": store.forward_lag_s(),
            "rejects": store.reject_counts(),
            "alerts": alerts,
        }

    return health


def build_site(
    root: Path,
    *,
    lanes: dict[str, int] | None = None,
    web: dict[str, Any] | None = None,
    language: str = "en",
) -> WebSite:
    root.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    (root / "gw.key").write_text(bytes(key).hex() + "\n")
    login = write_operator_login(root, os.urandom(32).hex())
    config = parse_config(
        {
            "id": GATEWAY,
            "site": SITE,
            "state_dir": str(root / "state"),
            "signing_key_file": str(root / "gw.key"),
            "registry_file": str(root / "registry.json"),
            "root_public_keys": [bytes(SigningKey.generate().verify_key).hex()],
            "lanes": lanes if lanes is not None else {"lane-1": 20, "lane-2": 20},
            "language": language,  # the tests' own assertions read English unless asked
            "web": {
                "enabled": True,
                "tls": False,  # TestClient speaks plain HTTP; serve() tests pass certs
                **login,
                **(web or {}),
            },
        }
    )
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.store_path, own_id=config.id)
    signer = GatewaySigner(store, key, config.id, config.site)

    def record_manual_entry(
        category: str, doc4: str | None, operator: str, lane: str | None, **outcome: str | None
    ) -> str:
        return signer.record_manual(category, operator, lane=lane, doc4=doc4, **outcome).eid_hex

    ctx = WebContext(
        store=store,
        config=config,
        record_manual_entry=record_manual_entry,
        health=health_for(store, config),
    )
    return WebSite(root, config, store, key, signer, ctx)
