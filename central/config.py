"""Central service configuration: one strict model (`common.config`), read from TOML or JSON.

A relative registry path is relative to the config file. $CHOT_CENTRAL_STORE overrides
`store` (a database password belongs in the environment, not in the file). Operator tokens
(for the read and tracing API) are stored as SHA-256 hashes, like the gateway tokens in the
registry: inline under [operators], or in the operator registry file (`operators_file`) that
`chot provision operator add NAME --role tracer|report` writes (central/operators.py).
"""

import hashlib
import hmac
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from central.ingest import MAX_EVENTS
from common.config import PublicKeyHex, StrictModel, load_model
from protocol.events import MAX_EVENT_BYTES

ROLES = ("report", "tracing", "ops")


class Operator(StrictModel):
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 hex of the token")
    roles: list[Literal["report", "tracing", "ops"]] = Field(
        default_factory=lambda: ["report"],
        description="report: reports, health, load, stats; tracing: visits and contacts; "
        "ops: publish signed documents (`chot provision publish`)",
    )
    role: str | None = Field(
        None, description="the role the credential was issued for (tracer, report, ops)"
    )
    revoked: bool = Field(False, description="a revoked credential is refused")
    issued_at: int | None = Field(None, description="Unix s (provisioning)")


class CentralConfig(StrictModel):
    store: str = Field(
        "sqlite:///central.db", description="sqlite:///path.db or postgresql://user@host/db"
    )
    registry: Path = Field(description="registry JSON: signer keys and hashed gateway tokens")
    host: str = "127.0.0.1"
    port: int = Field(8470, ge=1, le=65535)
    max_body_bytes: int = Field(
        MAX_EVENTS * (MAX_EVENT_BYTES + 16) + 1024,
        ge=1024,
        description="larger request bodies get 413 before they are read",
    )
    retention_days: int | None = Field(None, ge=1, description="drop days older than this")
    timezone: str = Field(
        "Asia/Ho_Chi_Minh", description="local day for reports; sites not in site_timezones"
    )
    site_timezones: dict[str, str] = Field(
        default_factory=dict,
        description="site -> IANA zone: times people read (tracing, reports) are shown in it",
    )
    operators: dict[str, Operator] = Field(default_factory=dict)
    operators_file: Path | None = Field(
        None,
        description="operator registry JSON from `chot provision operator add NAME --role "
        "tracer|report` (HOME/central/operators.json): hashed tokens, re-read on change",
    )
    root_public_keys: list[PublicKeyHex] = Field(
        default_factory=list,
        description="hex Ed25519 ops root keys: published documents must verify against one",
    )

    def timezone_for(self, site: str | None) -> str:
        return self.site_timezones.get(site or "", self.timezone)

    def operator_for(self, token: str) -> tuple[str, Operator] | None:
        digest = hash_token(token)
        for name, operator in self.operators.items():
            if hmac.compare_digest(operator.token_sha256, digest):
                return name, operator
        return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_config(path: str | Path) -> CentralConfig:
    """TOML or JSON file -> config; ConfigError names the file and the key."""
    store = os.environ.get("CHOT_CENTRAL_STORE")
    return load_model(CentralConfig, path, {"store": store} if store else None)
