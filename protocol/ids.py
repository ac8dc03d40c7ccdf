"""Site, device and gateway ids: safe in MQTT topics, file names, SQL and logs."""

import re

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def require_id(value: str, what: str = "id") -> str:
    if not is_valid_id(value):
        raise ValueError(f"{what} {value!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting alnum)")
    return value
