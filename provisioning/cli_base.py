"""What every `chot provision` handler shares: the `Output` it returns and the ops home it opens.

Handlers live in cli_keys.py, cli_passes.py and cli_sites.py; cli.py wires them into the parser
and prints their `Output`. They import this module, never cli.py, so no import runs in a circle.
"""

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.i18n import Phrase

if TYPE_CHECKING:
    from provisioning.home import OpsHome

HOME_ENV = "CHOT_HOME"


@dataclass(frozen=True)
class Output:
    """What a command shows: ``data`` as one JSON line with --json; otherwise ``lines``, or
    ``data`` as "Label: value" lines when there are none, in the command line's language
    (provisioning/cli_words.py). ``code`` is the exit status."""

    data: dict | list
    lines: "list[str | Phrase] | None" = None  # Phrases are translated when printed
    code: int = 0


Handler = Callable[[argparse.Namespace], Output]


def open_home(args: argparse.Namespace) -> "OpsHome":
    """The ops home named by --home or $CHOT_HOME (imported late: `chot --help` stays light)."""
    from provisioning.home import OpsHome

    path = args.home or os.environ.get(HOME_ENV)
    if not path:
        raise ValueError(f"--home DIR (or ${HOME_ENV}) is required")
    return OpsHome(path)
