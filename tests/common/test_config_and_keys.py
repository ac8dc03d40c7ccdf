"""common.config and common.keys: one config base for every service, one key-file reader."""

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from pydantic import Field

from common.config import (
    ConfigError,
    PublicKeyHex,
    StrictModel,
    load_model,
    read_secret,
    resolve_paths,
    validate,
)
from common.keys import KeyFileError, load_key_file


class Section(StrictModel):
    key_file: Path
    extra_files: list[Path] = Field(default_factory=list)
    absolute: Path = Path("/etc/chot/x")


class Config(StrictModel):
    name: str
    root_key: PublicKeyHex | None = None
    section: Section
    by_name: dict[str, Section] = Field(default_factory=dict)


def test_relative_paths_resolve_beside_the_file_at_any_depth(tmp_path: Path) -> None:
    config = validate(
        Config,
        {
            "name": "a",
            "section": {"key_file": "k", "extra_files": ["x", "/abs/y"]},
            "by_name": {"b": {"key_file": "sub/k"}},
        },
    )
    resolved = resolve_paths(config, tmp_path)
    assert resolved.section.key_file == tmp_path / "k"
    assert resolved.section.extra_files == [tmp_path / "x", Path("/abs/y")]
    assert resolved.section.absolute == Path("/etc/chot/x")
    assert resolved.by_name["b"].key_file == tmp_path / "sub/k"


def test_a_name_systemd_passed_as_a_credential_wins(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "k").write_text("secret")
    (tmp_path / "k").write_text("a copy the service user may not read")
    (tmp_path / "here").write_text("secret")
    config = validate(Config, {"name": "a", "section": {"key_file": "k", "extra_files": ["here"]}})
    resolved = resolve_paths(config, tmp_path, creds)
    assert resolved.section.key_file == creds / "k"  # the credential, though a file is beside
    assert resolved.section.extra_files == [tmp_path / "here"]  # not a credential: beside


def test_unknown_keys_and_bad_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"section\.kye_file: Extra inputs"):
        validate(Config, {"name": "a", "section": {"key_file": "k", "kye_file": "k"}})
    with pytest.raises(ConfigError, match="root_key"):
        validate(Config, {"name": "a", "root_key": "abcd", "section": {"key_file": "k"}})
    config = validate(Config, {"name": "a", "section": {"key_file": "k"}})
    with pytest.raises(ValueError, match="frozen"):
        config.name = "b"  # type: ignore[misc]


def test_load_model_reads_toml_and_json_with_overrides(tmp_path: Path) -> None:
    toml_file = tmp_path / "c.toml"
    toml_file.write_text('name = "a"\n[section]\nkey_file = "k"\n')
    assert load_model(Config, toml_file).section.key_file == tmp_path / "k"
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"name": "a", "section": {"key_file": "k"}}))
    assert load_model(Config, json_file, {"name": "over"}).name == "over"
    (tmp_path / "bad.toml").write_text("name = ")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_model(Config, tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_model(Config, tmp_path / "missing.toml")
    (tmp_path / "wrong.toml").write_text('name = "a"\n')
    with pytest.raises(ConfigError, match=r"wrong\.toml: section: Field required"):
        load_model(Config, tmp_path / "wrong.toml")


def test_read_secret_order_and_a_missing_configured_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt.password").write_text("from-credential\n")
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}

    def read(**kw: object) -> str | None:
        return read_secret(environ=env, credential="mqtt.password", **kw)  # type: ignore[arg-type]

    assert read(file=secret_file, env="PW") == "from-file"
    assert read(env="PW") == "from-credential"
    env["PW"] = "from-env"
    assert read(file=secret_file, env="PW") == "from-env"
    assert read_secret(None, environ={}) is None
    with pytest.raises(ConfigError, match="secret file"):
        read_secret(tmp_path / "nope", environ={})


def test_key_file_must_be_private_and_a_seed(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "unit.key"
    path.write_text(bytes(key).hex() + "\n")
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)
    assert bytes(load_key_file(path, strict_mode=False)) == bytes(key)  # warned, not refused
    path.chmod(0o600)
    assert bytes(load_key_file(path)) == bytes(key)
    path.write_text("ab" * 31)
    with pytest.raises(KeyFileError, match="64 hex"):
        load_key_file(path)
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(KeyFileError, match="64 hex"):
        load_key_file(path)
    with pytest.raises(KeyFileError, match="No such file"):
        load_key_file(tmp_path / "missing.key")
    assert issubclass(KeyFileError, ConfigError)
