"""Issuer keys: create (and so rotate), trust another authority's, retire, revoke, list.

A mixin of `OpsHome` (home.py). Every change re-signs the trust list (and, for a revoked key,
the revocation list) through `SignedLists` (home_lists.py), so devices learn it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from nacl.signing import SigningKey

from protocol import cose
from protocol.trust import PASS_KINDS, IssuerKey, check_max_validity
from provisioning.errors import OpsError
from provisioning.home_lists import unix_time
from provisioning.secrets import write_secret
from provisioning.state import HomeFiles, IssuerRecord


@dataclass(frozen=True)
class IssuerInfo:
    """What `issuer list` shows: public data only."""

    issuer: str
    kid: str
    public_key: str
    kinds: list[str]
    status: str
    local: bool
    not_before: int
    not_after: int | None
    max_validity: dict[str, int]  # kind -> seconds, every kind (defaults filled in)


class IssuerKeys(HomeFiles):
    """The issuer keys of an ops home; combined into `OpsHome` with `SignedLists`."""

    # from SignedLists (home_lists.py)
    sign_trust_list: Callable[..., bytes]
    sign_revocation_list: Callable[..., bytes]

    def create_issuer(
        self,
        issuer: str,
        *,
        kinds: tuple[str, ...] = PASS_KINDS,
        max_validity: dict[str, int] | None = None,
        now: int | None = None,
        sign: bool = True,
    ) -> IssuerInfo:
        """A new issuer key held by this home (also how a key is rotated: create, then retire
        the old one). The trust list is re-signed so devices learn it. `max_validity` (kind ->
        seconds) lowers or raises the protocol's defaults for this issuer's passes."""
        _check_kinds(kinds)
        limits = _check_limits(max_validity)
        key = SigningKey.generate()
        kid = cose.kid_for(bytes(key.verify_key)).hex()
        key_file = f"issuers/{kid}.key"
        write_secret(self.path / key_file, (bytes(key).hex() + "\n").encode())
        return self._add_issuer_record(
            kid,
            IssuerRecord(
                issuer,
                bytes(key.verify_key).hex(),
                list(kinds),
                unix_time(now),
                None,
                "active",
                key_file,
                limits,
            ),
            sign,
            now,
        )

    def add_external_issuer(
        self,
        issuer: str,
        public_key: bytes,
        *,
        kinds: tuple[str, ...] = PASS_KINDS,
        not_before: int = 0,
        max_validity: dict[str, int] | None = None,
        now: int | None = None,
    ) -> IssuerInfo:
        """Trust another authority's issuer by its public key (we never see its private key)."""
        _check_kinds(kinds)
        limits = _check_limits(max_validity)
        if len(public_key) != 32:
            raise OpsError("an Ed25519 public key is 32 bytes (64 hex digits)")
        kid = cose.kid_for(public_key).hex()
        record = IssuerRecord(issuer, public_key.hex(), list(kinds), not_before)
        record.max_validity = limits
        return self._add_issuer_record(kid, record, True, now)

    def _add_issuer_record(
        self, kid: str, record: IssuerRecord, sign: bool, now: int | None
    ) -> IssuerInfo:
        if not record.issuer or len(record.issuer) > 64:
            raise OpsError("issuer id must be 1-64 characters")
        if kid in self.state.issuers:
            raise OpsError(f"issuer key {kid} is already known")
        self.state.issuers[kid] = record
        self.save()
        if sign:
            self.sign_trust_list(now=now)
        return self._info(kid)

    def retire_issuer(self, kid: str, *, now: int | None = None) -> IssuerInfo:
        """Stop issuing with a key; passes it already issued stay valid until they expire."""
        kid = self._resolve(kid)
        record = self.state.issuers[kid]
        if record.status != "active":
            raise OpsError(f"issuer key {kid} is {record.status}")
        record.status, record.not_after = "retired", unix_time(now)
        self.save()
        self.sign_trust_list(now=now)
        return self._info(kid)

    def revoke_issuer(self, kid: str, *, now: int | None = None) -> IssuerInfo:
        """A compromised key: out of the trust list and into the revocation list's kids, so a
        device that has either of the new lists refuses every pass it signed."""
        kid = self._resolve(kid)
        record = self.state.issuers[kid]
        if record.status == "revoked":
            raise OpsError(f"issuer key {kid} is already revoked")
        record.status = "revoked"
        record.not_after = record.not_after or unix_time(now)
        self.state.revoked_kids = sorted({*self.state.revoked_kids, kid})
        self.save()
        self.sign_trust_list(now=now)
        self.sign_revocation_list(now=now)
        return self._info(kid)

    def list_issuers(self) -> list[IssuerInfo]:
        return [self._info(kid) for kid in self.state.issuers]

    def _resolve(self, kid: str) -> str:
        """The full kid hex for a kid or a unique prefix of one."""
        matches = [k for k in self.state.issuers if k.startswith(kid.lower())] if kid else []
        if len(matches) != 1:
            raise OpsError(f"no single issuer key matches {kid!r}")
        return matches[0]

    def _info(self, kid: str) -> IssuerInfo:
        r = self.state.issuers[kid]
        limits = {k: key_entry(r).max_validity_s(k) for k in r.kinds}
        return IssuerInfo(
            r.issuer,
            kid,
            r.public_key,
            list(r.kinds),
            r.status,
            r.local,
            r.not_before,
            r.not_after,
            limits,
        )

    def trusted_issuers(self) -> list[IssuerKey]:
        """What the trust list carries: every key not revoked (retired ones keep not_after)."""
        return [key_entry(r) for r in self.state.issuers.values() if r.status != "revoked"]


def key_entry(r: IssuerRecord) -> IssuerKey:
    """The trust-list entry of one issuer record."""
    return IssuerKey(
        r.issuer,
        bytes.fromhex(r.public_key),
        tuple(r.kinds),
        r.not_before,
        r.not_after,
        tuple(sorted(r.max_validity.items())),
    )


def _check_limits(max_validity: dict[str, int] | None) -> dict[str, int]:
    try:
        return dict(check_max_validity(max_validity or {}))
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def _check_kinds(kinds: tuple[str, ...]) -> None:
    unknown = set(kinds) - set(PASS_KINDS)
    if unknown or not kinds:
        raise OpsError(f"kinds must be among {', '.join(PASS_KINDS)}")
