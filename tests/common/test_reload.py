"""ReloadingFile: re-read on change, keep the last good value, honour `when_missing`."""

import json
import logging
import os
from pathlib import Path

import pytest

from common.reload import ReloadingFile


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _write(path: Path, data: object) -> None:
    """Atomic replace, as provisioning does: a new inode every time."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def test_loads_then_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    source = ReloadingFile(path, _load_json, initial={})
    assert source.get() == {"v": 1}
    assert source.loaded
    _write(path, {"v": 2})
    assert source.get() == {"v": 2}


def test_change_inside_one_mtime_tick_is_seen(tmp_path: Path) -> None:
    """Same mtime_ns (coarse filesystem clocks), but a new inode and size: still reloaded."""
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    stamp = os.stat(path)
    source = ReloadingFile(path, _load_json, initial={})
    assert source.get() == {"v": 1}
    _write(path, {"v": 22})
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert source.get() == {"v": 22}


def test_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    reads: list[Path] = []

    def load(p: Path) -> dict:
        reads.append(p)
        return _load_json(p)

    source = ReloadingFile(path, load, initial={})
    for _ in range(5):
        source.get()
    assert len(reads) == 1


def test_broken_file_keeps_last_good_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    source = ReloadingFile(path, _load_json, initial={}, name="registry")
    assert source.get() == {"v": 1}
    path.write_text('{"v": 2')  # half written
    with caplog.at_level(logging.ERROR, logger="common.reload"):
        assert source.get() == {"v": 1}
        assert source.get() == {"v": 1}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "registry" in errors[0].getMessage()
    assert "JSONDecodeError" in errors[0].getMessage()
    _write(path, {"v": 3})
    assert source.get() == {"v": 3}


def test_first_load_failure_returns_initial(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("not json")
    source = ReloadingFile(path, _load_json, initial={"empty": True})
    assert source.get() == {"empty": True}
    assert not source.loaded


def test_missing_file_keeps_last_good_by_default(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    source = ReloadingFile(path, _load_json, initial={})
    assert source.get() == {"v": 1}
    path.unlink()
    assert source.get() == {"v": 1}
    _write(path, {"v": 2})
    assert source.get() == {"v": 2}


def test_missing_file_uses_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    _write(path, {"alice": "x"})
    source = ReloadingFile(path, _load_json, initial={}, when_missing=dict)
    assert source.get() == {"alice": "x"}
    path.unlink()
    assert source.get() == {}
    _write(path, {"alice": "x"})  # comes back with the same content and size
    assert source.get() == {"alice": "x"}


def test_request_reload_rereads_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    _write(path, {"v": 1})
    calls: list[int] = []

    def load(p: Path) -> dict:
        calls.append(1)
        return _load_json(p)

    source = ReloadingFile(path, load, initial={})
    source.get()
    source.request_reload()
    source.get()
    assert len(calls) == 2
    assert source.reload() is True
    assert len(calls) == 3
