"""A small fleet for central tests: two sites, their gateways and devices, real Ed25519 keys."""

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from central.config import CentralConfig, hash_token
from protocol import cbor
from protocol.events import Event, new_event_id, sign_event
from protocol.registry import Registry, Signer

T0 = 1_627_776_000_000  # 2021-08-01T00:00:00Z (07:00 in Ho Chi Minh City), Unix ms
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

GATEWAY_TOKENS = {"gw-hn": "hn-secret-token", "gw-hcm": "hcm-secret-token"}
OPERATOR_TOKENS = {"tracer": "tracer-token", "analyst": "analyst-token"}

SIGNERS = [  # id, site, role, lane
    ("gw-hn", "HN-01", "gateway", None),
    ("dev-a", "HN-01", "device", "lane-1"),
    ("dev-b", "HN-01", "device", "lane-2"),
    ("dev-x", "HN-01", "device", "lane-3"),  # revoked
    ("gw-hcm", "HCM-01", "gateway", None),
    ("dev-c", "HCM-01", "device", "lane-1"),
]


def sub(n: int) -> bytes:
    """Subject pseudonym number n (16 bytes)."""
    return n.to_bytes(16, "big")


@dataclass
class Fleet:
    keys: dict[str, SigningKey]
    registry: Registry
    registry_path: Path
    seqs: dict[str, itertools.count] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> "Fleet":
        registry = Registry()
        keys = {}
        for signer_id, site, role, lane in SIGNERS:
            keys[signer_id] = SigningKey.generate()
            registry.add(Signer(signer_id, site, role, bytes(keys[signer_id].verify_key), lane))
        registry.revoke("dev-x")
        for gateway_id, token in GATEWAY_TOKENS.items():
            registry.set_token(gateway_id, token)
        path = directory / "registry.json"
        registry.save(path)
        return cls(keys, registry, path)

    def config(self, store_url: str, **extra) -> CentralConfig:
        operators = {
            "tracer": {
                "token_sha256": hash_token(OPERATOR_TOKENS["tracer"]),
                "roles": ["report", "tracing"],
            },
            "analyst": {
                "token_sha256": hash_token(OPERATOR_TOKENS["analyst"]),
                "roles": ["report"],
            },
        }
        return CentralConfig(
            store=store_url, registry=self.registry_path, operators=operators, **extra
        )

    def next_seq(self, dev: str) -> int:
        return next(self.seqs.setdefault(dev, itertools.count(1)))

    def event(self, dev: str, t_ms: int, **fields) -> Event:
        signer = self.registry.signers[dev]
        defaults = {
            "eid": new_event_id(),
            "typ": "scan" if signer.role == "device" else "load",
            "dev": dev,
            "site": signer.site,
            "seq": self.next_seq(dev),
            "t_ms": t_ms,
            "clock": "synced",
            "lane": signer.lane,
        }
        if defaults["typ"] == "scan":
            defaults.update(verdict="pass", reason="ok", kind="declaration", tlv=3)
        defaults.update(fields)
        return Event(**defaults)

    def sign(self, event: Event, key_of: str | None = None) -> bytes:
        return sign_event(event, self.keys[key_of or event.dev])

    def scan(self, dev: str, t_ms: int, subject: int, **fields) -> bytes:
        ref = (subject + 1000).to_bytes(16, "big")
        return self.sign(self.event(dev, t_ms, sub=sub(subject), ref=ref, **fields))


def batch(gateway: str, events: list) -> bytes:
    """The CBOR body a gateway posts."""
    return cbor.dumps({"gateway": gateway, "events": events})


def headers(gateway: str, token: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token or GATEWAY_TOKENS[gateway]}",
        "X-Chot-Gateway": gateway,
        "Content-Type": "application/cbor",
    }


def operator_headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKENS[name]}"}
