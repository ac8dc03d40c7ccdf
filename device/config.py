"""Scanner configuration: one TOML file, validated strictly (see config.example.toml).

The base model, path resolution and secrets are `common.config`'s: unknown keys are errors
naming the key, relative paths are relative to the config file's folder (or systemd's
``$CREDENTIALS_DIRECTORY``), and the MQTT password comes from ``$CHOT_MQTT_PASSWORD``,
``password_file``, or the ``mqtt.password`` credential, never from this file.
"""

from pathlib import Path
from typing import Any, Literal

from nacl.signing import SigningKey
from pydantic import Field, field_validator, model_validator

from common.config import (
    ConfigError,
    PublicKeyHex,
    StrictModel,
    credentials_dir,
    read_config_file,
    read_secret,
    resolve_paths,
    under_state_directory,
    validate,
)
from common.keys import KeyFileError, load_key_file
from protocol.ids import is_valid_id
from protocol.trust import PASS_KINDS

__all__ = ["ConfigError", "DeviceConfig", "load_config", "load_signing_key", "parse_config"]


def _check_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError("must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit")
    return value


class DeviceSection(StrictModel):
    id: str = Field(description="device id, also the MQTT client id and username")
    site: str
    lane: str | None = None
    state_dir: Path | None = Field(
        None,
        description="outbox.db and adopted *.cose; default $STATE_DIRECTORY (systemd), else"
        " 'state' beside the config; a relative one lies inside $STATE_DIRECTORY when set",
    )
    signing_key_file: Path = Field(description="Ed25519 seed, 64 hex chars, mode 0600")
    offline_after_s: float = Field(30.0, gt=0, description="show 'offline' after this long")

    _ids = field_validator("id", "site")(_check_id)


class TrustSection(StrictModel):
    root_public_keys: list[PublicKeyHex] = Field(
        min_length=1, description="pinned ops root keys (hex)"
    )
    trust_list_file: Path | None = None
    revocation_list_file: Path | None = None
    dcc_trust_list_file: Path | None = Field(
        None,
        description="initial signed DCC trust list (EU DCC signers, dcc-trust.cose); a newer"
        " one retained on chot/v1/{site}/dcc-trust replaces it",
    )
    skew_s: int = Field(300, ge=0, le=3600)
    gateway_public_keys: dict[str, PublicKeyHex] = Field(
        description="gateway id -> Ed25519 key (hex): the only keys whose acks free the outbox;"
        " required: a unit pinning none could never free its outbox, so it does not start",
    )

    @field_validator("gateway_public_keys")
    @classmethod
    def _some_gateway_key(cls, keys: dict[str, str]) -> dict[str, str]:
        if not keys:
            raise ValueError(
                "no gateway key pinned: add the site's gateway (`chot provision gateway add`) "
                "and copy the rewritten device.toml; acks of an unpinned gateway free nothing"
            )
        for gateway in keys:
            _check_id(gateway)
        return keys

    def root_keys(self) -> list[bytes]:
        return [bytes.fromhex(k) for k in self.root_public_keys]

    def gateway_keys(self) -> dict[str, bytes]:
        return {gw: bytes.fromhex(k) for gw, k in self.gateway_public_keys.items()}


class DccPolicySection(StrictModel):
    """[policy.dcc]: the site's rules for EU DCCs (protocol/dcc_policy.py). A signed device
    config's `policy.dcc` overrides these key by key (device/app.py)."""

    kinds: list[Literal["vaccination", "test", "recovery"]] = Field(
        default_factory=lambda: ["vaccination", "test", "recovery"],
        description="DCC types this site accepts",
    )
    require_complete_course: bool = Field(True, description="dn >= sd for a vaccination")
    vaccination_min_days: int = Field(
        0, ge=0, le=365, description="days after the last dose before it counts"
    )
    test_max_age_h: float = Field(
        72.0, gt=0, le=24 * 365, description="a test counts this long after its sample time"
    )


class PolicySection(StrictModel):
    allowed_kinds: list[Literal["declaration", "vaccination", "test", "recovery"]] = Field(
        default_factory=lambda: list(PASS_KINDS)
    )
    debounce_s: float = Field(5.0, ge=0, le=600)
    duplicate_window_s: float = Field(1800.0, ge=0, le=7 * 24 * 3600)
    resignal_s: float = Field(2.0, ge=0.2, le=60)
    dcc: DccPolicySection = DccPolicySection()


class MqttSection(StrictModel):
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
        """$CHOT_MQTT_PASSWORD, else the ``mqtt.password`` credential, else password_file.

        The credential wins: under systemd the file may be root-only (LoadCredential= hands
        the service its own copy)."""
        secret = read_secret(env="CHOT_MQTT_PASSWORD", credential="mqtt.password")
        return secret if secret is not None else read_secret(self.password_file)


class CameraSection(StrictModel):
    """Where frames come from. The picamera2 fields configure the Pi camera for reading QR
    codes held 10-40 cm away (phone screens and printed cards); see device/README.md."""

    source: Literal["picamera2", "picamera", "opencv", "files", "synthetic", "keyboard"]
    width: int = Field(
        640, ge=64, le=4096, description="decoded frame width (picamera2: the lores Y plane)"
    )
    height: int = Field(480, ge=64, le=4096, description="decoded frame height")
    fps: float = Field(
        15.0,
        ge=1,
        le=120,
        description="frame rate: the Pi camera's FrameDurationLimits (a cap, so the decoder"
        " keeps up and the CPU stays cool) and the pace of synthetic or looped frames",
    )
    reopen_min_s: float = Field(
        1.0, ge=0.01, le=60, description="first retry after the source fails to open"
    )
    reopen_max_s: float = Field(
        30.0, ge=0.01, le=600, description="retry backoff doubles up to this (no_camera)"
    )
    # picamera2 only
    buffer_count: int = Field(
        3,
        ge=2,
        le=8,
        description="frames in flight: one being filled, one being copied out, one spare so"
        " the sensor never waits for the decoder",
    )
    lens_position: float | None = Field(
        None,
        ge=0,
        le=32,
        description="fixed focus in dioptres (1/distance in m; 4 = 25 cm) instead of"
        " continuous autofocus; the only focus setting a fixed-focus camera ignores",
    )
    af_range: Literal["normal", "macro", "full"] = Field(
        "normal", description="autofocus search range (macro: closer than about 20 cm only)"
    )
    exposure_value: float = Field(
        -0.5,
        ge=-4,
        le=4,
        description="EV compensation; below 0 keeps a bright phone screen's white from"
        " swallowing the QR modules",
    )
    metering: Literal["centre", "spot", "matrix"] = Field(
        "centre", description="metering weighted where the pass is held (the middle)"
    )
    exposure_mode: Literal["normal", "short"] = Field(
        "short", description="short: gain before long exposures, less blur from a moving hand"
    )
    device: int | str = 0
    paths: list[Path] = Field(default_factory=list)
    loop: bool = Field(False, description="files: replay forever at fps, like a camera")
    # synthetic queue: people arrive at a rate and hold their pass for a while
    passes_file: Path | None = Field(None, description="QR texts, one per line (synthetic)")
    arrival_per_min: float = Field(20.0, gt=0, le=600)
    hold_s: float = Field(1.5, gt=0, le=30)
    difficulty: Literal["easy", "normal", "hard"] = "normal"
    seed: int = 0

    @model_validator(mode="after")
    def _backoff_order(self) -> "CameraSection":
        if self.reopen_max_s < self.reopen_min_s:
            raise ValueError("reopen_max_s must be at least reopen_min_s")
        return self


class DecoderSection(StrictModel):
    name: Literal["zxing", "zbar"] = "zxing"


class GpioSection(StrictModel):
    backend: Literal["simulated", "rpigpio"] = "simulated"
    pins: dict[Literal["green", "red", "amber", "buzzer"], int] = Field(
        default_factory=lambda: {"green": 17, "red": 27, "amber": 22, "buzzer": 18}
    )


class OutboxSection(StrictModel):
    max_events: int = Field(100_000, ge=10, description="soft bound: alarm, keep recording")
    max_db_mb: int = Field(1024, ge=1, description="hard cap on outbox.db (spare the OS)")
    settle_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="acks and sent marks are written to the SD card at most this often (or every"
        " 64 acked rows): shorter means acked rows leave the file sooner, at more writes",
    )


class ClockSection(StrictModel):
    """The local clock-sync probe (device/clock_source.py); it never forks."""

    timesyncd_marker: Path = Field(
        Path("/run/systemd/timesync/synchronized"),
        description="systemd-timesyncd's flag file, read when adjtimex is refused"
        " (ProtectClock=yes)",
    )
    probe_interval_s: float = Field(
        10.0, ge=0, le=300, description="the sync state is asked at most this often"
    )


class DeviceConfig(StrictModel):
    device: DeviceSection
    trust: TrustSection
    policy: PolicySection = PolicySection()
    mqtt: MqttSection = MqttSection()
    camera: CameraSection
    decoder: DecoderSection = DecoderSection()
    gpio: GpioSection = GpioSection()
    outbox: OutboxSection = OutboxSection()
    clock: ClockSection = ClockSection()

    def resolve(self, base: Path) -> "DeviceConfig":
        """A copy with every relative path made relative to ``base`` (the config's folder)."""
        return resolve_paths(_with_state_dir(self), base, credentials_dir())


def _with_state_dir(config: DeviceConfig) -> DeviceConfig:
    """The outbox and documents go to $STATE_DIRECTORY under systemd (common.config)."""
    device = config.device.model_copy(
        update={"state_dir": under_state_directory(config.device.state_dir)}
    )
    return config.model_copy(update={"device": device})


def parse_config(data: dict[str, Any], base: Path) -> DeviceConfig:
    return validate(DeviceConfig, data).resolve(base)


def load_config(path: Path) -> DeviceConfig:
    path = Path(path)
    data = read_config_file(path)  # its errors already name the file
    try:
        return parse_config(data, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_signing_key(path: Path) -> SigningKey:
    """The device's Ed25519 seed (64 hex chars). Refused when others can read the file."""
    try:
        return load_key_file(path)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
