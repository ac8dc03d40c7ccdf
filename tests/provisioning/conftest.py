"""Fixtures for the ops tool: a fresh ops home, the CLI, and a site broker from its config."""

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.mosquitto import Broker, free_port
from harness.polling import wait_until
from provisioning import cli
from provisioning.broker import write_broker_config, write_local_config
from provisioning.home import OpsHome

SITE = "HN-01"
NOW = 1_790_000_000  # fixed time so validity checks are exact


@pytest.fixture
def home(tmp_path: Path) -> OpsHome:
    return OpsHome.init(tmp_path / "ops", now=NOW - 3600)


def build_parser() -> argparse.ArgumentParser:
    """The `provision` group and the lead's `pass` group (which adds our `issue`), wired as
    chot.cli does, without importing the other packages' groups."""
    from chot import pass_cmd

    parser = argparse.ArgumentParser(prog="chot")
    sub = parser.add_subparsers(dest="group", required=True)
    cli.add_commands(sub)
    pass_cmd.add_commands(sub)
    return parser


@pytest.fixture
def run_cli(capsys) -> Callable[..., tuple[int, str]]:
    """run_cli("provision", "init", DIR, "--json") -> (exit code, stdout)."""

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
        args = build_parser().parse_args([str(a) for a in argv])
        if stdin is not None:
            import io
            import sys

            old, sys.stdin = sys.stdin, io.StringIO(stdin)
            try:
                code = args.func(args)
            finally:
                sys.stdin = old
        else:
            code = args.func(args)
        return code, capsys.readouterr().out

    return run


def parse_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def site_broker(home: OpsHome, tmp_path: Path) -> Iterator[Callable[[], Broker]]:
    """Start the site broker from `broker config` output (a copy on a free port)."""
    started: list[Broker] = []

    def start() -> Broker:
        folder = tmp_path / "broker"
        write_broker_config(home, SITE, folder)
        port = free_port()
        conf = write_local_config(folder, port).read_text()
        broker = Broker(folder / "run", conf_text=conf, port=port).start()
        broker.folder = folder  # type: ignore[attr-defined]
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    """The project's one polling helper with this module's shorter default timeout."""
    return wait_until(predicate, timeout, interval=0.02)
