"""Field types shared by the scanner's and the gateway's pydantic configs."""

from typing import Annotated

from pydantic import AfterValidator

from protocol.cose import public_key_from_hex


def _check_public_key_hex(value: str) -> str:
    public_key_from_hex(value)  # ValueError names the bad value; pydantic names the key
    return value


# An Ed25519 public key as 64 hex characters (the ops root keys a unit pins)
PublicKeyHex = Annotated[str, AfterValidator(_check_public_key_hex)]
