"""A tiny TOML writer for the flat, two-level configs chot generates (tomllib only reads).

Strings go out as JSON strings, which are valid TOML basic strings; tables are written in the
order given so generated files read like the documented examples.
"""

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def key(k: str) -> str:
    """A bare key when TOML allows one, else a quoted key ("lane.1")."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(tables: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """{"table": {"key": value}} -> TOML text; table "" holds the root keys and comes first;
    None values are left out."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, table in sorted(tables.items(), key=lambda item: item[0] != ""):
        if lines:
            lines.append("")
        if name:
            lines.append(f"[{key(name)}]")
        lines += [f"{key(k)} = {value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def edit(path: Path, root: Mapping[str, Any] | None = None, **tables: Mapping[str, Any]) -> None:
    """Change some keys of a generated config file, as an operator would before deploying:
    `root` keys at the top level, each keyword a table whose keys are updated."""
    data = tomllib.loads(path.read_text())
    data.update(root or {})
    for name, values in tables.items():
        data.setdefault(name, {}).update(values)
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    path.write_text(dumps({"": top, **sections}, f"edited for this run: {path.name}"))
