"""Ed25519 key files as the units read them: a 64-hex-character seed in a 0600 file.

Provisioning writes these files (and may seal the ops keys with a passphrase, which only the
ops tooling reads); a scanner or gateway reads its own plain seed here, without the ops
package. A key file others can read is refused: the seed signs events in the unit's name.
"""

import logging
from pathlib import Path

from nacl.signing import SigningKey

from common.config import ConfigError

log = logging.getLogger(__name__)

SEED_BYTES = 32


class KeyFileError(ConfigError):
    """The key file is missing, readable by others, or not a 64-hex seed."""


def seed_from_text(text: str, source: Path | str) -> SigningKey:
    """A signing key from the seed's hex text (surrounding whitespace ignored)."""
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"key file {source} must hold 64 hex characters (an Ed25519 seed)")
    return SigningKey(seed)


def read_private_file(path: Path, *, strict_mode: bool = True) -> bytes:
    """The bytes of a secret file, refused when group or others may read it (only logged
    with `strict_mode=False`)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        if strict_mode:
            raise KeyFileError(f"key file {path} is readable by others: chmod 600 it")
        log.warning("key file %s is readable by others: chmod 600 it", path)
    return data


def load_key_file(path: Path, *, strict_mode: bool = True) -> SigningKey:
    """The Ed25519 signing key in a plain (unsealed) 0600 seed file."""
    data = read_private_file(path, strict_mode=strict_mode)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return seed_from_text(text, path)
