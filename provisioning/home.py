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

`OpsHome` is put together from one mixin per concern; this module keeps creating a home, its
root key and the site work:

    home_issuers.py  issuer keys: create, trust another's, retire, revoke, list
    home_lists.py    what the root signs: trust list, revocation list, device configs
    home_passes.py   issuing passes with the home's issuer keys

Every list is re-signed with the next version as soon as what it says changes, so the files in
the home are always the newest truth. Site work (units, brokers, operators) lives in sites.py,
which sees only the home's public files (state.HomeFiles): this module calls it, it never calls
back.
"""

import secrets
from pathlib import Path

from nacl.signing import SigningKey

from protocol.registry import Registry
from protocol.trust import PASS_KINDS, root_keyring
from provisioning import sites
from provisioning.errors import OpsError
from provisioning.home_issuers import IssuerInfo, IssuerKeys
from provisioning.home_lists import SignedLists
from provisioning.home_passes import PassIssuing
from provisioning.keys import load_key_file, new_key_file
from provisioning.secrets import get_passphrase, write_secret
from provisioning.state import OpsState

__all__ = ["IssuerInfo", "OpsHome"]


class OpsHome(IssuerKeys, SignedLists, PassIssuing):
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

    # --- root key ---------------------------------------------------------------------------

    def root_signing_key(self) -> SigningKey:
        if self._root is None:
            self._root = load_key_file(self.path / "root.key", passphrase=self._passphrase)
        return self._root

    def root_public_key(self) -> bytes:
        return bytes.fromhex(self.state.root_public_key)

    def root_keyring(self) -> dict[bytes, bytes]:
        return root_keyring([self.root_public_key()])

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
