"""Gateway configuration: one TOML file, validated strictly (unknown keys are errors).

The base model, path resolution and secrets are `common.config`'s: reading the file
(`load_config`) is kept apart from validation (`parse_config`) so tests build configs from
dicts; relative paths are resolved against the config file's folder, or in
`$CREDENTIALS_DIRECTORY` (systemd LoadCredential=) for a bare file name that does not exist
next to the config. Secrets (MQTT password, central token, session secret) are files named
here, never values in this file.
"""

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from common.config import (
    ConfigError,
    PublicKeyHex,
    StrictModel,
    load_model,
    read_config_file,
    read_secret,
    under_state_directory,
    validate,
)
from common.i18n import LANGUAGES, normalize
from common.localtime import zone
from protocol.ids import require_id

__all__ = ["ConfigError", "GatewayConfig", "load_config", "parse_config", "read_secret"]


class MqttConfig(StrictModel):
    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = Field(None, description="CA to check the broker's TLS certificate")
    cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    key_file: Path | None = None
    client_id: str | None = Field(None, description="fixed MQTT client id; default chot-gw-<id>")
    shared_group: str | None = Field(
        None, description="MQTT 5 shared subscription group, set for a gateway pair"
    )
    keepalive_s: int = Field(30, ge=5, le=600)
    session_expiry_s: int = Field(
        7 * 86400, ge=60, description="broker keeps our queue this long while we are away"
    )
    receive_maximum: int = Field(
        1000, ge=10, le=65535, description="unacknowledged QoS 1 messages in flight to us"
    )


class CentralConfig(StrictModel):
    url: str | None = Field(None, description="central store base URL; unset: keep events")
    token_file: Path | None = None
    batch_size: int = Field(500, ge=1, le=5000)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    idle_poll_s: float = Field(1.0, gt=0, description="pause when nothing is pending")
    ca_file: Path | None = None
    documents_poll_s: float = Field(
        60.0,
        gt=0,
        description="ask the central for newer signed documents this often (+-50 % jitter); "
        "failures back off like forwarding",
    )
    unreachable_alert_min: float = Field(
        10.0,
        gt=0,
        description="alert 'centre unreachable' once forwarding has failed, or the oldest "
        "event has waited for the centre, this many minutes",
    )


class BrokerAdminConfig(StrictModel):
    """Units join and leave the live site broker (gateway/broker_admin.py)."""

    dynsec: bool = Field(
        False,
        description="drive mosquitto's dynamic-security plugin from the signed registry "
        "(the gateway's MQTT login needs the $CONTROL/dynamic-security/# publish ACL)",
    )
    unit_key_file: Path | None = Field(
        None, description="mqtt-units.key from the bundle: the units' passwords derive from it"
    )

    @model_validator(mode="after")
    def _key_with_dynsec(self) -> "BrokerAdminConfig":
        if self.dynsec and self.unit_key_file is None:
            raise ValueError("dynsec needs unit_key_file (mqtt-units.key)")
        return self


class StoreConfig(StrictModel):
    max_bytes: int = Field(2_000_000_000, ge=1_000_000)
    disk_alert_free_bytes: int = Field(500_000_000, ge=0)
    retention_days: float = Field(14, gt=0, description="forwarded events kept this long")
    batch_max: int = Field(500, ge=1, description="events per ingest transaction at most")
    batch_ms: int = Field(20, ge=1, description="longest wait to fill an ingest transaction")
    maintain_interval_s: float = Field(60, gt=0)
    gap_expiry_hours: float = Field(
        24,
        gt=0,
        le=24 * 90,
        description="a sequence gap still open after this long is given up: its seqs are "
        "counted as never arrived and the device's ack moves past them",
    )
    queue_max: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="messages queued between MQTT and the store; past it QoS 0 ones "
        "(heartbeats) are dropped and counted, QoS 1 events never are",
    )


class WebConfig(StrictModel):
    """Operators' status page (gateway/web/). HTTPS unless `tls = false` is written out."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    tls: bool = Field(
        True,
        description="serve HTTPS with certfile/keyfile (Secure cookies, HSTS); false only "
        "behind a reverse proxy that terminates TLS on the same machine",
    )
    certfile: Path | None = Field(None, description="web.crt from `chot provision gateway add`")
    keyfile: Path | None = Field(None, description="web.key (0600)")
    users_file: Path | None = Field(None, description="operator logins, argon2/scrypt hashes")
    session_secret_file: Path | None = None
    login_concurrency: int = Field(
        2, ge=1, le=16, description="password checks at once (argon2: 64 MiB each)"
    )
    login_queue: int = Field(8, ge=0, le=64, description="logins waiting for a check; then 503")
    login_queue_wait_s: float = Field(2.0, gt=0, le=30, description="longest wait for a check")
    login_window_s: float = Field(60.0, gt=0, description="window of the login limits")
    login_failures_per_address: int = Field(
        10, ge=1, description="password checks per window from one address, any account"
    )
    login_failures_per_account: int = Field(
        5, ge=1, description="password checks per window for one account from one address"
    )

    @model_validator(mode="after")
    def _tls_files(self) -> "WebConfig":
        if self.enabled and self.tls and not (self.certfile and self.keyfile):
            raise ValueError(
                "tls needs certfile and keyfile (web.crt/web.key from `chot provision gateway "
                "add`); set tls = false only behind a TLS-terminating reverse proxy"
            )
        return self


class PolicyConfig(StrictModel):
    """Site policy the gateway applies itself; keep it equal to the units' [policy]."""

    duplicate_window_s: float = Field(
        1800.0,
        ge=0,
        le=7 * 24 * 3600,
        description="how long an accepted pass stays in the site's recent set shared with "
        "every unit (one pass, one entry per site) and how far apart two passes of it count "
        "as a repeat; the units' [policy] duplicate_window_s (their signed config) should match",
    )


class GatewayConfig(StrictModel):
    id: str = Field(description="gateway id, also its signer id in the registry")
    site: str
    state_dir: Path = Field(description="store and runtime files")
    signing_key_file: Path = Field(description="gateway Ed25519 seed (manual and load events)")
    registry_file: Path = Field(description="site registry JSON: device keys, revocations")
    root_public_keys: list[PublicKeyHex] = Field(
        min_length=1, description="hex Ed25519 ops root keys that sign trust lists and configs"
    )
    documents_dir: Path | None = Field(
        None, description="folder watched for signed trust/revocation/config documents"
    )
    load_interval_s: float = Field(60, gt=0, description="period of signed load summaries")
    verify_process: bool = Field(
        True,
        description="verify event signatures in a separate process: measured 1.6x faster "
        "drain of a 500-device reconnect storm, at about 80 MB more memory",
    )
    registry_check_s: float = Field(5, gt=0, description="registry file mtime poll period")
    lanes: dict[str, int] = Field(
        default_factory=dict, description="lane name -> capacity, people per minute"
    )
    language: str = Field(
        "vi", description="the status page's language unless the browser asks for another"
    )
    timezone: str = Field(
        "Asia/Ho_Chi_Minh", description="IANA zone every time on the page and in exports uses"
    )
    mqtt: MqttConfig = MqttConfig()
    central: CentralConfig = CentralConfig()
    broker: BrokerAdminConfig = BrokerAdminConfig()
    store: StoreConfig = StoreConfig()
    web: WebConfig = WebConfig()
    policy: PolicyConfig = PolicyConfig()

    @field_validator("id", "site")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return require_id(value)

    @field_validator("language")
    @classmethod
    def _supported_language(cls, value: str) -> str:
        if normalize(value) != value:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        zone(value)  # ValueError names the bad zone
        return value

    @property
    def root_keys(self) -> list[bytes]:
        return [bytes.fromhex(k) for k in self.root_public_keys]

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"chot-gw-{self.id}"

    @property
    def store_path(self) -> Path:
        return self.state_dir / "gateway.db"


def parse_config(data: dict[str, Any]) -> GatewayConfig:
    """Validate a config dict; ConfigError names the offending key, e.g. `mqtt.port`."""
    return validate(GatewayConfig, data)


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate the file; relative paths are resolved next to it, except a relative
    state_dir under systemd, which lies inside $STATE_DIRECTORY (common.config)."""
    given = read_config_file(Path(path)).get("state_dir")
    overrides = {}
    if isinstance(given, str):
        overrides["state_dir"] = str(under_state_directory(Path(given)))
    return load_model(GatewayConfig, path, overrides)
