"""The ops home: one folder holding everything the ops team signs with.

    HOME/ops.json           public state: versions, issuers, revocations, sites (state.py)
    HOME/root.key           ops root Ed25519 seed, 0600, optionally sealed with a passphrase
    HOME/root.pub           its public key (hex): what devices pin
    HOME/issuer.secret      HMAC key for subject pseudonyms, 0600
    HOME/issuers/<kid>.key  issuer signing keys, 0600
    HOME/trust.cose         newest signed trust list
    HOME/revocations.cose   newest signed revocation list
    HOME/registry.json      devices and gateways (protocol.registry)
    HOME/sites/<SITE>/      site CA, broker password file and ACL, operator logins
    HOME/bundles/<id>/      device and gateway bundles, ready to copy to an SD card

Every list is re-signed with the next version as soon as what it says changes, so the files in
the home are always the newest truth; `sign_trust_list` / `sign_revocation_list` also refresh
them before they expire. Site work (units, brokers, operators) lives in sites.py, which sees only
the home's public files (state.HomeFiles): this module calls it, it never calls back.
"""

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from protocol import cose
from protocol.documents import sign_document
from protocol.pass_v1 import PassClaims, encode_pass
from protocol.registry import Registry
from protocol.trust import (
    CONFIG_TYPE,
    PASS_KINDS,
    IssuerKey,
    check_max_validity,
    root_keyring,
    sign_revocation_list,
    sign_trust_list,
)
from provisioning import sites
from provisioning.errors import OpsError, VersionError
from provisioning.keys import load_key_file, new_key_file
from provisioning.passes import parse_pass_ref, subject_pseudonym
from provisioning.secrets import get_passphrase, write_secret
from provisioning.state import HomeFiles, IssuerRecord, OpsState
from provisioning.subject import record_issued


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


@dataclass(frozen=True)
class _SignedList:
    """Where one of the two root-signed lists keeps its last version and its newest copy."""

    label: str
    version_field: str  # the OpsState attribute
    file_name: str


TRUST_LIST = _SignedList("trust list", "trust_version", "trust.cose")
REVOCATION_LIST = _SignedList("revocation list", "revocation_version", "revocations.cose")


class OpsHome(HomeFiles):
    """An existing ops home. Create one with `OpsHome.init(path)`."""

    def __init__(self, path: str | Path, *, passphrase: bytes | None = None) -> None:
        super().__init__(path)
        self._passphrase = passphrase
        self._root: SigningKey | None = None

    # --- creation ---------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | Path,
        *,
        issuer: str = "VN-HN",
        kinds: tuple[str, ...] = PASS_KINDS,
        encrypt: bool = False,
        passphrase: bytes | None = None,
        max_age_s: int | None = None,
        now: int | None = None,
    ) -> "OpsHome":
        """Root key, one issuer key, pseudonym secret, and signed trust + revocation lists."""
        path = Path(path)
        if (path / "ops.json").exists() or (path / "root.key").exists():
            raise OpsError(f"{path} already holds an ops home; refusing to overwrite its keys")
        path.mkdir(parents=True, exist_ok=True)
        if encrypt and passphrase is None:
            passphrase = get_passphrase(confirm=True)
        root = new_key_file(path / "root.key", passphrase=passphrase if encrypt else None)
        (path / "root.pub").write_text(bytes(root.verify_key).hex() + "\n")
        write_secret(path / "issuer.secret", (secrets.token_bytes(32).hex() + "\n").encode())
        state = OpsState(root_public_key=bytes(root.verify_key).hex())
        if max_age_s is not None:
            state.max_age_s = max_age_s
        state.save(path / "ops.json")
        Registry().save(path / "registry.json")
        home = cls(path, passphrase=passphrase)
        home._root = root
        home.create_issuer(issuer, kinds=kinds, now=now, sign=False)
        home.sign_trust_list(now=now)
        home.sign_revocation_list(now=now)
        return home

    # --- keys -------------------------------------------------------------------------------

    def root_signing_key(self) -> SigningKey:
        if self._root is None:
            self._root = load_key_file(self.path / "root.key", passphrase=self._passphrase)
        return self._root

    def root_public_key(self) -> bytes:
        return bytes.fromhex(self.state.root_public_key)

    def root_keyring(self) -> dict[bytes, bytes]:
        return root_keyring([self.root_public_key()])

    def _issuer_secret(self) -> bytes:
        return bytes.fromhex((self.path / "issuer.secret").read_text().strip())

    # --- issuers ----------------------------------------------------------------------------

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
                _now(now),
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
        record.status, record.not_after = "retired", _now(now)
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
        record.not_after = record.not_after or _now(now)
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
        limits = {k: _key_entry(r).max_validity_s(k) for k in r.kinds}
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
        return [_key_entry(r) for r in self.state.issuers.values() if r.status != "revoked"]

    # --- signed lists -----------------------------------------------------------------------

    def _next_version(self, last: int, version: int | None, what: str) -> int:
        if version is None:
            return last + 1
        if version <= last:
            raise VersionError(f"{what} version {version} is not newer than {last}; refusing")
        return version

    def sign_trust_list(
        self, *, version: int | None = None, expires_in: int | None = None, now: int | None = None
    ) -> bytes:
        """Sign the next trust list, keep it as HOME/trust.cose and return its bytes."""
        issuers = self.trusted_issuers()
        return self._sign_list(
            TRUST_LIST,
            lambda **window: sign_trust_list(issuers, **window),
            version=version,
            expires_in=expires_in,
            now=now,
        )

    def sign_revocation_list(
        self, *, version: int | None = None, expires_in: int | None = None, now: int | None = None
    ) -> bytes:
        """Sign the next revocation list, keep it as HOME/revocations.cose and return it."""
        pass_refs = [bytes.fromhex(r) for r in self.state.revoked_pass_refs]
        kids = [bytes.fromhex(k)[:8] for k in self.state.revoked_kids]
        devices = self.state.revoked_devices
        return self._sign_list(
            REVOCATION_LIST,
            lambda **window: sign_revocation_list(
                pass_refs=pass_refs, kids=kids, devices=devices, **window
            ),
            version=version,
            expires_in=expires_in,
            now=now,
        )

    def _sign_list(
        self,
        kind: _SignedList,
        sign: Callable[..., bytes],
        *,
        version: int | None,
        expires_in: int | None,
        now: int | None,
    ) -> bytes:
        """Sign with the next (or the given, newer) version, remember it, keep the newest copy
        in the home and hand it to the site gateways. ``sign`` gets version, issued_at,
        expires_at and root_key as keywords."""
        version = self._next_version(getattr(self.state, kind.version_field), version, kind.label)
        issued = _now(now)
        data = sign(
            version=version,
            issued_at=issued,
            expires_at=issued + (expires_in or self.state.max_age_s),
            root_key=self.root_signing_key(),
        )
        setattr(self.state, kind.version_field, version)
        self.save()
        _write_public(self.path / kind.file_name, data)
        sites.refresh_gateway_bundles(self)
        return data

    def trust_list_bytes(self) -> bytes:
        return (self.path / "trust.cose").read_bytes()

    def revocation_list_bytes(self) -> bytes:
        return (self.path / "revocations.cose").read_bytes()

    def revoke_pass(self, pass_ref: bytes | str, *, now: int | None = None) -> bytes:
        """Add a pass reference (bytes or hex) to the revocation list and re-sign it."""
        ref = parse_pass_ref(pass_ref) if isinstance(pass_ref, str) else bytes(pass_ref)
        if len(ref) != 16:
            raise OpsError("a pass reference is 16 bytes")
        self.state.revoked_pass_refs = sorted({*self.state.revoked_pass_refs, ref.hex()})
        self.save()
        return self.sign_revocation_list(now=now)

    def sign_config(
        self, device_id: str, body: dict, *, expires_in: int | None = None, now: int | None = None
    ) -> bytes:
        """A signed per-device config document (typ chot-config), next version for that device."""
        version = self.state.config_versions.get(device_id, 0) + 1
        issued = _now(now)
        data = sign_document(
            CONFIG_TYPE,
            version,
            issued,
            issued + (expires_in or 365 * 24 * 3600),
            {**body, "dev": device_id},
            self.root_signing_key(),
        )
        self.state.config_versions[device_id] = version
        self.save()
        return data

    # --- passes -----------------------------------------------------------------------------

    def set_default_issuer(self, issuer: str | None) -> str | None:
        """The issuer `pass issue` uses when several are active and none is named."""
        if issuer is not None and not any(
            r.issuer == issuer and r.local and r.status == "active"
            for r in self.state.issuers.values()
        ):
            raise OpsError(f"no active issuer key held here for {issuer}")
        self.state.default_issuer = issuer
        self.save()
        return issuer

    def issuer_signing_key(self, issuer: str | None = None) -> tuple[IssuerRecord, SigningKey]:
        """The newest active local key, optionally of one issuer id or kid (prefix).

        With no issuer named and keys of more than one issuer id active here, the configured
        default issuer is used; without one this refuses and lists them: a pass signed by the
        wrong authority is worse than a question. (Several keys of one issuer id are a
        rotation: the newest signs.)"""
        active = {
            kid: r for kid, r in self.state.issuers.items() if r.local and r.status == "active"
        }
        if issuer is None:
            ids = sorted({r.issuer for r in active.values()})
            if len(ids) > 1:
                if self.state.default_issuer not in ids:
                    raise OpsError(
                        f"{len(ids)} issuers are active here ({', '.join(ids)}): name one with "
                        "--issuer, or set a default with `chot provision issuer default ISSUER`"
                    )
                issuer = self.state.default_issuer
        candidates = [
            (kid, r)
            for kid, r in active.items()
            if issuer is None or r.issuer == issuer or kid.startswith(issuer.lower())
        ]
        if not candidates:
            raise OpsError(f"no active issuer key held here for {issuer or 'any issuer'}")
        _kid, record = max(candidates, key=lambda item: item[1].not_before)
        return record, load_key_file(self.path / str(record.key_file))

    def issue_pass(
        self,
        *,
        kind: str,
        doc_number: str,
        hours: float = 72,
        issuer: str | None = None,
        name: str | None = None,
        doc4: str | None = None,
        dob: int | None = None,
        now: int | None = None,
        _key: tuple[IssuerRecord, SigningKey] | None = None,
    ) -> tuple[str, PassClaims]:
        """Sign one pass; returns (QR text, claims). The document number only feeds `sub`."""
        record, key = _key or self.issuer_signing_key(issuer)
        if kind not in record.kinds:
            raise OpsError(f"issuer {record.issuer} may not issue {kind} passes")
        if hours <= 0:
            raise OpsError("hours must be positive")
        limit_s = _key_entry(record).max_validity_s(kind)
        if hours * 3600 > limit_s:
            raise OpsError(
                f"{hours:g} hours is longer than issuer {record.issuer} allows for {kind} "
                f"passes ({limit_s / 3600:g} hours); scanners would refuse it "
                "(validity_too_long). Use --hours up to that, or raise the limit with "
                "`chot provision issuer create --max-hours`"
            )
        iat = _now(now)
        if iat < record.not_before:
            raise OpsError("issuer key is not valid yet at that time")
        claims = PassClaims(
            iss=record.issuer,
            iat=iat,
            exp=iat + int(hours * 3600),
            cti=os.urandom(16),
            sub=subject_pseudonym(self._issuer_secret(), doc_number),
            kind=kind,
            name=name,
            doc4=doc4,
            dob=dob,
        )
        qr_text = encode_pass(claims, key)
        record_issued(self, claims)  # the issuing ledger: revoke by person (subject.py)
        return qr_text, claims

    # --- devices, gateways, operators (sites.py does the work) ------------------------------

    def add_device(self, site: str, name: str, **options) -> "sites.DeviceBundle":
        return sites.add_device(self, site, name, **options)

    def revoke_device(self, device_id: str, *, now: int | None = None) -> bytes:
        """Revoke a unit (device or gateway) everywhere; returns the re-signed revocation list."""
        sites.revoke_signer(self, device_id)
        return self.sign_revocation_list(now=now)  # also refreshes the gateway bundles

    def add_gateway(self, site: str, name: str, **options) -> "sites.GatewayBundle":
        return sites.add_gateway(self, site, name, **options)

    def revoke_gateway(self, gateway_id: str, *, now: int | None = None) -> bytes:
        return self.revoke_device(gateway_id, now=now)

    def add_operator(self, site: str, user: str, password: str) -> Path:
        return sites.add_operator(self, site, user, password)


def _key_entry(r: IssuerRecord) -> IssuerKey:
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


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else int(now)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
