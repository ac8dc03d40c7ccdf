"""Secret files: created 0600 from the first byte, never overwritten, optionally sealed.

`os.open(..., O_CREAT | O_EXCL, 0o600)` sets the mode atomically with creation (a chmod after
the write would leave a window where the key is world-readable) and refuses to replace an
existing key. A sealed file is PyNaCl SecretBox under a key derived by argon2id from a
passphrase (CHOT_PASSPHRASE, or a prompt).
"""

import getpass
import json
import os
from pathlib import Path

import nacl.pwhash
import nacl.secret
import nacl.utils

PASSPHRASE_ENV = "CHOT_PASSPHRASE"
SEALED_FORMAT = "chot-sealed-v1"


class SecretExists(FileExistsError):
    """Raised instead of overwriting a key or any other secret file."""


def write_secret(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Create `path` with mode 0600 and write `data`. Refuses to overwrite unless `replace`.

    With `replace` (password and user files that are edited, never keys) the new content goes
    to a 0600 temporary file first and is renamed over the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".tmp") if replace else path
    if replace and target.exists():
        target.unlink()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretExists(f"{path} exists; refusing to overwrite a secret") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if replace:
        target.replace(path)


def get_passphrase(confirm: bool = False) -> bytes:
    """The ops passphrase from $CHOT_PASSPHRASE, else an interactive prompt."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    first = getpass.getpass("ops passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ValueError("passphrases differ")
    if not first:
        raise ValueError("empty passphrase")
    return first.encode()


def seal(secret: bytes, passphrase: bytes) -> bytes:
    """SecretBox(argon2id(passphrase)) as a small JSON document."""
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    ops, mem = nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, ops, mem)
    box = nacl.secret.SecretBox(key).encrypt(secret)
    doc = {
        "format": SEALED_FORMAT,
        "kdf": "argon2id",
        "salt": salt.hex(),
        "opslimit": ops,
        "memlimit": mem,
        "box": bytes(box).hex(),
    }
    return (json.dumps(doc) + "\n").encode()


def is_sealed(data: bytes) -> bool:
    return data.lstrip().startswith(b"{")


def unseal(data: bytes, passphrase: bytes) -> bytes:
    """Reverse of `seal`; raises ValueError for a wrong passphrase or a damaged file."""
    doc = json.loads(data)
    if doc.get("format") != SEALED_FORMAT:
        raise ValueError("not a chot sealed file")
    key = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase,
        bytes.fromhex(doc["salt"]),
        int(doc["opslimit"]),
        int(doc["memlimit"]),
    )
    try:
        return nacl.secret.SecretBox(key).decrypt(bytes.fromhex(doc["box"]))
    except nacl.exceptions.CryptoError:
        raise ValueError("wrong passphrase or damaged key file") from None
