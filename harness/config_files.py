"""Config files for tests and benchmarks, written with the ops tool's own TOML writer
(`provisioning.toml_out`) so they read like what `chot provision` generates."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioning import toml_out


def _plain(value: Any) -> Any:
    """Paths become strings; containers are converted item by item."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_toml(data: Mapping[str, Any], header: str = "") -> str:
    """{"key": scalar, "table": {...}} -> TOML: scalars at the root, dicts as tables."""
    plain = _plain(data)
    top = {k: v for k, v in plain.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in plain.items() if isinstance(v, Mapping)}
    return toml_out.dumps({"": top, **tables}, header)


def edit_toml(path: Path, **tables: Mapping[str, Any]) -> None:
    """Change some keys of a generated config, as an operator would before deploying."""
    toml_out.edit(path, **{name: _plain(values) for name, values in tables.items()})
