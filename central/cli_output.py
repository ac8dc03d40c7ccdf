"""How `chot central` query commands print: a table in the reader's language (central/human.py),
CSV or JSON."""

import argparse
import csv
import json
import sys
from typing import Any

from common.i18n import Phrase, cli_translator


def stats_rows(stats: dict) -> list[dict]:
    return [{"dev": dev, **item} for dev, item in stats["by_device"].items()]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def print_csv(rows: list[dict]) -> None:
    if not rows:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})


def print_human(result: Any, rows: list[dict], tz: str) -> None:
    from central.human import stats_summary

    if isinstance(result, dict):  # stats: the store's totals, then per scanner
        print(stats_summary(result, cli_translator()))
    print_table(rows, tz)


def print_table(rows: list[dict], tz: str | None = None) -> None:
    """A table in the command line's language, Unix ms times in the site's zone (ISO 8601;
    central/human.py); times already written as text are shown as they are."""
    from central.human import table

    for line in table(rows, cli_translator(), tz):
        print(line)


def emit(args: argparse.Namespace, data: dict, text: Phrase) -> None:
    """JSON with --json, else the phrase in the command line's language."""
    print(json.dumps(data) if args.json else text.render(cli_translator()))


def json_default(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else str(value)
