"""The device registry: which event signers (devices and gateways) exist, and their keys.

Provisioning writes it; a gateway loads its site's registry to verify device events, and the
central store loads all sites' registries. JSON on disk (public data only: no private keys):

    {"version": 1,
     "signers": {"<id>": {"site": "HN-01", "role": "device"|"gateway", "public_key": "<hex>",
                          "lane": "lane-1", "revoked": false}}}

Gateway-to-central bearer tokens are kept apart, as SHA-256 hashes, under "tokens":
    {"tokens": {"<gateway id>": "<sha256 hex of token>"}}
"""

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from protocol.ids import require_id
from protocol.reasons import ProtocolError, Reason

ROLES = ("device", "gateway")


@dataclass(frozen=True)
class Signer:
    id: str
    site: str
    role: str
    public_key: bytes
    lane: str | None = None
    revoked: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("id")
        data["public_key"] = self.public_key.hex()
        return data


@dataclass
class Registry:
    signers: dict[str, Signer] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # gateway id -> sha256 hex

    def add(self, signer: Signer) -> None:
        require_id(signer.id, "signer id")
        require_id(signer.site, "site")
        if signer.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if len(signer.public_key) != 32:
            raise ValueError("public key must be 32 bytes (Ed25519)")
        self.signers[signer.id] = signer

    def revoke(self, signer_id: str) -> None:
        self.signers[signer_id] = replace(self.signers[signer_id], revoked=True)

    def key_for(self, signer_id: str) -> bytes | None:
        """Public key of an active signer; None for unknown and revoked ones."""
        signer = self.signers.get(signer_id)
        return None if signer is None or signer.revoked else signer.public_key

    def signer_keys(
        self, *, site: str | None = None, role: str | None = None
    ) -> Callable[[str], bytes | None]:
        """The key lookup `protocol.events.open_event` takes, for events signed by this
        registry's signers (optionally only those at `site` with `role`).

        An unknown signer (or one at another site, or of another role) gives None, which
        `open_event` refuses as an unknown device; a revoked one raises `device_revoked`,
        so the reason code says why the event was refused."""

        def key_for(signer_id: str) -> bytes | None:
            signer = self.signers.get(signer_id)
            if signer is None:
                return None
            if (site is not None and signer.site != site) or (
                role is not None and signer.role != role
            ):
                return None
            if signer.revoked:
                raise ProtocolError(Reason.DEVICE_REVOKED, f"{signer.role} {signer_id} is revoked")
            return signer.public_key

        return key_for

    def is_revoked(self, signer_id: str) -> bool:
        signer = self.signers.get(signer_id)
        return signer is not None and signer.revoked

    def for_site(self, site: str) -> "Registry":
        return Registry({k: s for k, s in self.signers.items() if s.site == site}, {})

    def __iter__(self) -> Iterator[Signer]:
        return iter(self.signers.values())

    # --- gateway tokens -------------------------------------------------------------------

    def set_token(self, gateway_id: str, token: str) -> None:
        self.tokens[gateway_id] = hashlib.sha256(token.encode()).hexdigest()

    def check_token(self, gateway_id: str, token: str) -> bool:
        expected = self.tokens.get(gateway_id)
        if expected is None or self.is_revoked(gateway_id):
            return False
        return hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest())

    # --- files ----------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "version": 1,
            "signers": {k: s.to_json() for k, s in sorted(self.signers.items())},
            "tokens": dict(sorted(self.tokens.items())),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Registry":
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("registry must be a JSON object with version 1")
        registry = cls()
        for signer_id, item in data.get("signers", {}).items():
            registry.add(
                Signer(
                    id=signer_id,
                    site=item["site"],
                    role=item["role"],
                    public_key=bytes.fromhex(item["public_key"]),
                    lane=item.get("lane"),
                    revoked=bool(item.get("revoked", False)),
                )
            )
        registry.tokens = {str(k): str(v) for k, v in data.get("tokens", {}).items()}
        return registry

    @classmethod
    def load(cls, path: str | Path) -> "Registry":
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
