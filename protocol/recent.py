"""Recently accepted passes of a site, shared by its gateway with every unit (one pass, one entry).

The gateway publishes, retained on ``chot/v1/{site}/recent`` (topics.recent_topic), one compact
snapshot: the references of the passes its units accepted within the site's duplicate window,
newest last, at most ``MAX_REFS``. Each unit merges it into its own on-disk recent set, so a
pass accepted at lane 2 is ``duplicate_recent`` at lane 3 while both are connected. A unit never
waits for it: cut off from the gateway it decides from what it already holds.

Signed like an ack (COSE_Sign1 by the gateway key the units pin), so a login that could
publish on the topic still could not make a unit refuse someone. Ages, not times: ``a[i]`` is
how many seconds before ``t_ms`` (the gateway's clock when it signed) ``r[i]`` was accepted, so
a unit with a wrong clock still measures the window from its own monotonic clock.

    {"v": 1, "typ": "chot-recent", "gw": "gw-1", "site": "hcmc-1", "t_ms": 1700000000000,
     "r": h'<16 bytes per ref>...', "a": [12, 3, 0]}
"""

from dataclasses import dataclass

from nacl.signing import SigningKey

from protocol import cbor, cose
from protocol.gateway_signed import GatewaySignedError, open_gateway_signed
from protocol.ids import is_valid_id

RECENT_VERSION = 1
RECENT_TYPE = "chot-recent"
REF_BYTES = 16
MAX_REFS = 8192  # ~150 KB signed: a busy site's half hour
MAX_AGE_S = 7 * 24 * 3600
MAX_RECENT_BYTES = 64 + MAX_REFS * (REF_BYTES + 5) + 1024


class RecentError(GatewaySignedError):
    """Why a snapshot was refused (too_large, unsigned, bad_recent, wrong_key, wrong_site)."""


@dataclass(frozen=True)
class RecentRef:
    ref: bytes  # pass reference SHA-256(cti)[0:16]
    age_s: int  # seconds before the snapshot's t_ms that it was accepted


@dataclass(frozen=True)
class RecentSnapshot:
    gw: str
    site: str
    t_ms: int
    refs: tuple[RecentRef, ...]

    def to_cbor(self) -> dict:
        return {
            "v": RECENT_VERSION,
            "typ": RECENT_TYPE,
            "gw": self.gw,
            "site": self.site,
            "t_ms": self.t_ms,
            "r": b"".join(r.ref for r in self.refs),
            "a": [r.age_s for r in self.refs],
        }


def sign_recent(snapshot: RecentSnapshot, key: SigningKey) -> bytes:
    """The gateway signs; checked like a received one so it never sends what units refuse."""
    body = snapshot.to_cbor()
    _check(body)
    raw = cose.sign1(cbor.dumps(body), key)
    if len(raw) > MAX_RECENT_BYTES:
        raise RecentError("too_large", f"{len(raw)} bytes")
    return raw


def open_recent(data: bytes, gateway_keys: dict[str, bytes], site: str) -> RecentSnapshot:
    """Verify a snapshot against the pinned gateway keys (gateway id -> Ed25519 public key)."""
    snapshot = open_gateway_signed(
        data, gateway_keys, max_bytes=MAX_RECENT_BYTES, check=_check, error=RecentError
    )
    if snapshot.site != site:
        raise RecentError("wrong_site", snapshot.site)
    return snapshot


def _check(data: object) -> RecentSnapshot:
    if type(data) is not dict or data.get("v") != RECENT_VERSION or data.get("typ") != RECENT_TYPE:
        raise RecentError("bad_recent", f"not a v{RECENT_VERSION} {RECENT_TYPE}")
    gw, site, t_ms = data.get("gw"), data.get("site"), data.get("t_ms")
    if not (
        isinstance(gw, str) and is_valid_id(gw) and isinstance(site, str) and is_valid_id(site)
    ):
        raise RecentError("bad_recent", "bad gw or site id")
    if type(t_ms) is not int or not 0 <= t_ms <= 2**53:
        raise RecentError("bad_recent", "t_ms")
    raw, ages = data.get("r"), data.get("a")
    if type(raw) is not bytes or type(ages) is not list or len(raw) % REF_BYTES:
        raise RecentError("bad_recent", "r is bytes of 16 per ref, a a list of ages")
    if len(ages) != len(raw) // REF_BYTES or len(ages) > MAX_REFS:
        raise RecentError("bad_recent", f"one age per ref, at most {MAX_REFS}")
    if any(type(a) is not int or not 0 <= a <= MAX_AGE_S for a in ages):
        raise RecentError("bad_recent", f"ages are integers in [0, {MAX_AGE_S}]")
    refs = tuple(
        RecentRef(raw[i * REF_BYTES : (i + 1) * REF_BYTES], age) for i, age in enumerate(ages)
    )
    return RecentSnapshot(gw, site, t_ms, refs)
