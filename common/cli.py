"""What every command line of chot shares: the usage error and the two output shapes.

Handlers raise `UsageError` for bad arguments (`chot` prints it and exits 2) and print a record
either as one JSON object per line (`--json`, for scripts) or as `key=value` pairs for people.
"""

import json
from typing import Any


class UsageError(Exception):
    """Raised by a handler for bad arguments: exit code 2 with the message."""


def format_record(record: dict[str, Any], as_json: bool) -> str:
    """One line: JSON, or `key=value` pairs with the None values left out."""
    if as_json:
        return json.dumps(record)
    return "  ".join(f"{k}={v}" for k, v in record.items() if v is not None)


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """Print one record and flush (a scan of many images shows progress line by line)."""
    print(format_record(record, as_json), flush=True)
