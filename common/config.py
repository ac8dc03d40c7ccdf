"""The config base every service shares: strict models, paths beside the file, secrets apart.

- `StrictModel`: unknown keys are errors (a typo "hots" names the key instead of silently
  taking a default) and a loaded config is frozen.
- Reading the file (`load_model`) is kept apart from validation (`validate`), so tests build
  configs from dicts. Errors are one `ConfigError` whose message names the dotted key.
- Relative paths mean "next to the config file", except a name that systemd passed as a
  credential (`LoadCredential=`, found in `$CREDENTIALS_DIRECTORY`): that one wins, because the
  service was started with it on purpose and the copy beside the config may be unreadable to it. `resolve_paths` walks every `Path`
  field of the model, so a new path field needs no list to be kept in step.
- Secrets are never values in the file: `read_secret` takes an environment variable, a file
  named in the config, or a systemd credential.
"""

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from protocol.cose import public_key_from_hex

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_public_key_hex(value: str) -> str:
    public_key_from_hex(value)  # ValueError names the bad value; pydantic names the key
    return value


# An Ed25519 public key as 64 hex characters (the ops root keys a unit pins)
PublicKeyHex = Annotated[str, AfterValidator(_check_public_key_hex)]

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """'mqtt.hots: Extra inputs are not permitted' — one item per problem, key first."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """`model.model_validate(data)`, with a `ConfigError` naming every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def credentials_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """systemd's `$CREDENTIALS_DIRECTORY`, when the service was started with credentials."""
    value = (os.environ if environ is None else environ).get(CREDENTIALS_ENV)
    return Path(value) if value else None


def resolve_path(value: Path, base: Path, credentials: Path | None = None) -> Path:
    """A relative path is relative to `base`, unless the credentials directory holds that
    name: a credential systemd passed to the service is what it must use."""
    if value.is_absolute():
        return value
    if credentials is not None and (credentials / value).exists():
        return credentials / value
    return base / value


def _resolve_value(value: Any, base: Path, credentials: Path | None) -> Any:
    if isinstance(value, Path):
        return resolve_path(value, base, credentials)
    if isinstance(value, BaseModel):
        return resolve_paths(value, base, credentials)
    if isinstance(value, list | tuple):
        return type(value)(_resolve_value(v, base, credentials) for v in value)
    if isinstance(value, dict):
        return {k: _resolve_value(v, base, credentials) for k, v in value.items()}
    return value


def resolve_paths(model: M, base: Path, credentials: Path | None = None) -> M:
    """A copy of `model` (and its nested sections) with every relative `Path` resolved."""
    updates = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        resolved = _resolve_value(value, base, credentials)
        if resolved is not value:
            updates[name] = resolved
    return model.model_copy(update=updates) if updates else model


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's content as a dict: JSON for `*.json`, TOML otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        kind = "JSON" if Path(path).suffix == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a table of settings")
    return data


def load_model(model: type[M], path: str | Path, overrides: Mapping[str, Any] | None = None) -> M:
    """Read, validate and resolve a config file. `overrides` (e.g. from the environment)
    replace top-level keys before validation. Errors name the file and the key."""
    path = Path(path)
    data = read_config_file(path)
    data.update(overrides or {})
    try:
        config = validate(model, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return resolve_paths(config, path.resolve().parent, credentials_dir())


def read_secret(
    file: Path | None = None,
    *,
    env: str | None = None,
    credential: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The first of: `$env`, the configured `file`, `$CREDENTIALS_DIRECTORY/credential`.

    None when none is set. A configured file that cannot be read is a `ConfigError`: a
    service must not silently run without the password it was given."""
    environ = os.environ if environ is None else environ
    if env and environ.get(env):
        return environ[env]
    if file is not None:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret file {file}: {exc.strerror}") from None
    creds = credentials_dir(environ)
    if credential and creds is not None and (creds / credential).is_file():
        return (creds / credential).read_text().strip()
    return None


def under_state_directory(path: Path | None, default: Path = Path("state")) -> Path:
    """Where a service keeps its state. Under systemd, ``StateDirectory=`` ($STATE_DIRECTORY)
    is the unit's one writable place (/etc is read-only under ProtectSystem=strict): no path
    means it, and a relative one lies inside it. Elsewhere no path means ``default``, resolved
    beside the config file like any relative path."""
    state_env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_env and (path is None or not path.is_absolute()):
        return Path(state_env) / (path or "")
    return default if path is None else path
