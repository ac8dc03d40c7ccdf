"""Ed25519 key files: a 64-hex-character seed, 0600 (the format `common.keys` reads), which
the ops home may seal with a passphrase."""

from pathlib import Path

from nacl.signing import SigningKey

from common.keys import read_private_file, seed_from_text
from provisioning.secrets import get_passphrase, is_sealed, seal, unseal, write_secret


def new_key_file(path: Path, *, passphrase: bytes | None = None) -> SigningKey:
    """Generate a key and write its seed (sealed when a passphrase is given). Never overwrites."""
    key = SigningKey.generate()
    seed_hex = (bytes(key).hex() + "\n").encode()
    write_secret(path, seal(seed_hex, passphrase) if passphrase else seed_hex)
    return key


def load_key_file(path: Path, *, passphrase: bytes | None = None) -> SigningKey:
    """Read a seed file; a sealed one asks for the passphrase ($CHOT_PASSPHRASE or a prompt)."""
    data = read_private_file(Path(path))
    if is_sealed(data):
        data = unseal(data, passphrase if passphrase is not None else get_passphrase())
    return seed_from_text(data.decode("ascii", errors="replace"), path)
