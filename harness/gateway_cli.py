"""`gateway status`, run the way an operator runs it: a process of its own from the checkout,
reading the gateway's config and store, so tests see the command's real output."""

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The gateway role's own entry point; e2e tests pass `chot_argv()` for the `chot` command.
GATEWAY_CLI = (sys.executable, "-m", "gateway.cli")


def gateway_status(
    config: Path, *extra: str, lang: str | None = None, cli: Sequence[str] = GATEWAY_CLI
) -> subprocess.CompletedProcess[str]:
    """`gateway status --config CONFIG EXTRA...`; it must exit 0. `lang` sets CHOT_LANG (the
    language of its words), otherwise the environment's is kept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if lang is not None:
        env["CHOT_LANG"] = lang
    out = subprocess.run(
        [*cli, "gateway", "status", "--config", str(config), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def gateway_status_json(config: Path, *, cli: Sequence[str] = GATEWAY_CLI) -> dict[str, Any]:
    """`gateway status --json`, parsed."""
    return json.loads(gateway_status(config, "--json", cli=cli).stdout)
