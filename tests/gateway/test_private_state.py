"""gateway.db holds the 4 ID characters of manual entries (issue #13, item 11): after a real
gateway start the store's directory is 0700 and the database, -wal and -shm are 0600, whatever
the umask, and an older install's 0644 files are tightened."""

import os
import sqlite3
import stat

import pytest

from gateway.app import GatewayApp
from gateway.config import parse_config
from tests.support.gateway_core import ACL, USERS, Scanner, Site, make_event


@pytest.fixture
def broker(mosquitto):
    return mosquitto(users=USERS, acl=ACL)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_store_directory_and_files_are_private_after_a_real_start(broker, tmp_path) -> None:
    site = Site(tmp_path / "site", devices=1)
    config = parse_config(site.config(broker))
    # an older install: the directory and the database world-readable
    old_umask = os.umask(0o022)
    try:
        config.state_dir.mkdir(parents=True)
        sqlite3.connect(config.store_path).close()
        assert (mode(config.state_dir), mode(config.store_path)) == (0o755, 0o644)
        app = GatewayApp(config).start()
    finally:
        os.umask(old_umask)
    scanner = Scanner(broker)
    try:
        assert app.ready.wait(10)
        scanner.publish("d01", make_event(site.keys["d01"], "d01", 1)[0])
        scanner.wait_acks({"d01": 1})
        assert mode(config.state_dir) == 0o700
        for suffix in ("", "-wal", "-shm"):
            path = config.store_path.with_name(config.store_path.name + suffix)
            assert path.exists() and mode(path) == 0o600, (path.name, oct(mode(path)))
    finally:
        scanner.close()
        app.stop()


def test_a_fresh_store_is_created_private(broker, tmp_path) -> None:
    site = Site(tmp_path / "fresh", devices=1)
    config = parse_config(site.config(broker))
    old_umask = os.umask(0o000)  # the loosest umask: modes must not depend on it
    try:
        app = GatewayApp(config).start()
    finally:
        os.umask(old_umask)
    try:
        assert app.ready.wait(10)
        assert mode(config.state_dir) == 0o700
        assert mode(config.store_path) == 0o600
        for suffix in ("-wal", "-shm"):
            path = config.store_path.with_name(config.store_path.name + suffix)
            assert not path.exists() or mode(path) == 0o600
    finally:
        app.stop()
