"""The public files of an ops home (no secret, no personal data): ops.json and registry.json.

ops.json remembers the last signed versions (so a version is never reused), the issuer keys and
their status, what is revoked, and the sites with their brokers and gateways. ``HomeFiles`` is
what the site work (sites.py, broker.py) needs of a home; ``OpsHome`` adds keys and signing.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocol.ids import require_id
from protocol.registry import Registry
from provisioning.errors import OpsError

DEFAULT_MAX_AGE_S = 7 * 24 * 3600  # how long a device may stay offline on one signed list
DEFAULT_DUPLICATE_WINDOW_S = 1800  # a site's recent-pass window (provisioning/site_policy.py)
STATE_VERSION = 1


@dataclass
class IssuerRecord:
    """One issuer key known to this home. `key_file` is set only for keys we hold."""

    issuer: str
    public_key: str  # hex
    kinds: list[str]
    not_before: int
    not_after: int | None = None
    status: str = "active"  # active | retired | revoked
    key_file: str | None = None  # relative to the home; None for another authority's key
    # kind -> longest validity in seconds, signed into the trust list (protocol/trust.py
    # DEFAULT_MAX_VALIDITY_S for kinds not named)
    max_validity: dict[str, int] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.key_file is not None


@dataclass
class SiteRecord:
    broker_host: str = "chot-gw.local"
    broker_port: int = 8883
    gateways: list[str] = field(default_factory=list)
    # gateway id -> bundle folder, kept current (registry, signed lists) after every change
    gateway_bundles: dict[str, str] = field(default_factory=dict)
    # device id -> bundle folder: its [trust] gateway_public_keys follow the site's gateways
    device_bundles: dict[str, str] = field(default_factory=dict)
    # the site's policy, written into its device and gateway bundles alike (site_policy.py)
    duplicate_window_s: int = DEFAULT_DUPLICATE_WINDOW_S


@dataclass
class OpsState:
    root_public_key: str = ""
    max_age_s: int = DEFAULT_MAX_AGE_S
    trust_version: int = 0
    revocation_version: int = 0
    config_versions: dict[str, int] = field(default_factory=dict)  # device id -> last version
    issuers: dict[str, IssuerRecord] = field(default_factory=dict)  # kid hex -> record
    revoked_pass_refs: list[str] = field(default_factory=list)  # hex, sorted
    revoked_kids: list[str] = field(default_factory=list)
    revoked_devices: list[str] = field(default_factory=list)
    sites: dict[str, SiteRecord] = field(default_factory=dict)
    # the issuer id `pass issue` uses when more than one is active and none is named
    default_issuer: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> "OpsState":
        if data.get("version") != STATE_VERSION:
            raise ValueError("ops.json: unsupported version")
        data = dict(data)
        data.pop("version")
        state = cls(**data)
        state.issuers = {k: IssuerRecord(**v) for k, v in data["issuers"].items()}
        state.sites = {k: SiteRecord(**v) for k, v in data["sites"].items()}
        return state

    @classmethod
    def load(cls, path: Path) -> "OpsState":
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: Path) -> None:
        tmp = Path(path).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


class HomeFiles:
    """An existing ops home's public files: its state (ops.json) and the registry."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "ops.json").is_file():
            raise OpsError(f"{self.path} is not an ops home (no ops.json); run provision init")
        self.state = OpsState.load(self.path / "ops.json")

    def save(self) -> None:
        self.state.save(self.path / "ops.json")

    def registry(self) -> Registry:
        return Registry.load(self.path / "registry.json")

    def save_registry(self, registry: Registry) -> None:
        registry.save(self.path / "registry.json")

    def site_dir(self, site: str) -> Path:
        return self.path / "sites" / require_id(site, "site")
