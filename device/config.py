"""Scanner configuration: one TOML file, validated strictly (see config.example.toml).

Every model forbids unknown keys, so a typo ("hots") is an error naming the key, not a silent
default. Reading the file (``load_config``) is kept apart from validation
(``DeviceConfig.model_validate``) so tests build configs from dicts. Relative paths are
relative to the config file's folder. Secrets are never in the file: the MQTT password comes
from ``$CHOT_MQTT_PASSWORD``, ``password_file``, or systemd's ``$CREDENTIALS_DIRECTORY``.
"""

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chot.config_types import PublicKeyHex
from protocol.ids import is_valid_id
from protocol.trust import PASS_KINDS


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError("must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit")
    return value


class DeviceSection(_Strict):
    id: str = Field(description="device id, also the MQTT client id and username")
    site: str
    lane: str | None = None
    state_dir: Path = Field(Path("state"), description="outbox.db and adopted *.cose")
    signing_key_file: Path = Field(description="Ed25519 seed, 64 hex chars, mode 0600")
    offline_after_s: float = Field(30.0, gt=0, description="show 'offline' after this long")

    _ids = field_validator("id", "site")(_check_id)


class TrustSection(_Strict):
    root_public_keys: list[PublicKeyHex] = Field(
        min_length=1, description="pinned ops root keys (hex)"
    )
    trust_list_file: Path | None = None
    revocation_list_file: Path | None = None
    skew_s: int = Field(300, ge=0, le=3600)

    def root_keys(self) -> list[bytes]:
        return [bytes.fromhex(k) for k in self.root_public_keys]


class PolicySection(_Strict):
    allowed_kinds: list[Literal["declaration", "vaccination", "test", "recovery"]] = Field(
        default_factory=lambda: list(PASS_KINDS)
    )
    debounce_s: float = Field(5.0, ge=0, le=600)
    duplicate_window_s: float = Field(1800.0, ge=0, le=7 * 24 * 3600)
    resignal_s: float = Field(2.0, ge=0.2, le=60)


class MqttSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    heartbeat_s: float = Field(15.0, ge=1, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    reconnect_max_s: float = Field(30.0, ge=1, le=600)
    window: int = Field(64, ge=1, le=1000)
    ack_timeout_s: float = Field(15.0, ge=1)

    def password(self) -> str | None:
        """$CHOT_MQTT_PASSWORD, else password_file, else $CREDENTIALS_DIRECTORY/mqtt.password."""
        if os.environ.get("CHOT_MQTT_PASSWORD"):
            return os.environ["CHOT_MQTT_PASSWORD"]
        candidates = [self.password_file] if self.password_file else []
        if os.environ.get("CREDENTIALS_DIRECTORY"):
            candidates.append(Path(os.environ["CREDENTIALS_DIRECTORY"]) / "mqtt.password")
        for path in candidates:
            if path.is_file():
                return path.read_text().strip()
        return None


class CameraSection(_Strict):
    source: Literal["picamera2", "picamera", "opencv", "files", "synthetic", "keyboard"]
    width: int = Field(640, ge=64, le=4096)
    height: int = Field(480, ge=64, le=4096)
    fps: float = Field(15.0, gt=0, le=120, description="pace of synthetic or looped frames")
    device: int | str = 0
    paths: list[Path] = Field(default_factory=list)
    loop: bool = Field(False, description="files: replay forever at fps, like a camera")
    # synthetic queue: people arrive at a rate and hold their pass for a while
    passes_file: Path | None = Field(None, description="QR texts, one per line (synthetic)")
    arrival_per_min: float = Field(20.0, gt=0, le=600)
    hold_s: float = Field(1.5, gt=0, le=30)
    difficulty: Literal["easy", "normal", "hard"] = "normal"
    seed: int = 0


class DecoderSection(_Strict):
    name: Literal["zxing", "zbar"] = "zxing"


class GpioSection(_Strict):
    backend: Literal["simulated", "rpigpio"] = "simulated"
    pins: dict[Literal["green", "red", "amber", "buzzer"], int] = Field(
        default_factory=lambda: {"green": 17, "red": 27, "amber": 22, "buzzer": 18}
    )


class OutboxSection(_Strict):
    max_events: int = Field(100_000, ge=10, description="soft bound: alarm, keep recording")
    max_db_mb: int = Field(1024, ge=1, description="hard cap on outbox.db (spare the OS)")


class DeviceConfig(_Strict):
    device: DeviceSection
    trust: TrustSection
    policy: PolicySection = PolicySection()
    mqtt: MqttSection = MqttSection()
    camera: CameraSection
    decoder: DecoderSection = DecoderSection()
    gpio: GpioSection = GpioSection()
    outbox: OutboxSection = OutboxSection()

    def resolve(self, base: Path) -> "DeviceConfig":
        """A copy with every relative path made relative to ``base`` (the config's folder)."""

        def fix(section: BaseModel) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, value in section:
                if isinstance(value, Path) and not value.is_absolute():
                    value = base / value
                elif isinstance(value, list) and value and isinstance(value[0], Path):
                    value = [v if v.is_absolute() else base / v for v in value]
                out[name] = value
            return out

        return DeviceConfig.model_validate({name: fix(section) for name, section in self})


def describe(error: ValidationError) -> str:
    """'mqtt.hots: Extra inputs are not permitted' — one line per problem, key first."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def parse_config(data: dict[str, Any], base: Path) -> DeviceConfig:
    try:
        return DeviceConfig.model_validate(data).resolve(base)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def load_config(path: Path) -> DeviceConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(data, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_signing_key(path: Path) -> SigningKey:
    """The device's Ed25519 seed (64 hex chars). Refused when others can read the file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"signing key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"signing key {path} is readable by others: chmod 600 it")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ConfigError(f"signing key {path} must hold 64 hex characters (an Ed25519 seed)")
    return SigningKey(seed)
