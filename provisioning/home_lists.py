"""What the ops root key signs: the trust list, the revocation list and per-device configs.

A mixin of `OpsHome` (home.py). Every list is re-signed with the next version as soon as what it
says changes, so the files in the home are always the newest truth; `sign_trust_list` /
`sign_revocation_list` also refresh them before they expire, and hand them to the site gateways.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from protocol.documents import sign_document
from protocol.trust import CONFIG_TYPE, IssuerKey, sign_revocation_list, sign_trust_list
from provisioning import sites
from provisioning.errors import OpsError, VersionError
from provisioning.passes import parse_pass_ref
from provisioning.state import HomeFiles


@dataclass(frozen=True)
class _SignedList:
    """Where one of the two root-signed lists keeps its last version and its newest copy."""

    label: str
    version_field: str  # the OpsState attribute
    file_name: str


TRUST_LIST = _SignedList("trust list", "trust_version", "trust.cose")
REVOCATION_LIST = _SignedList("revocation list", "revocation_version", "revocations.cose")


class SignedLists(HomeFiles):
    """Signing the root's documents; combined into `OpsHome`, which gives the two below."""

    # from OpsHome (home.py) and IssuerKeys (home_issuers.py)
    root_signing_key: Callable[[], SigningKey]
    trusted_issuers: Callable[[], list[IssuerKey]]

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
        issued = unix_time(now)
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
        issued = unix_time(now)
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


def unix_time(now: int | None) -> int:
    """The time an operation is stamped with: the given one (tests, replays) or the clock."""
    return int(time.time()) if now is None else int(now)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
