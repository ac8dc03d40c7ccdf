"""The local clock-sync probe never forks and works under ProtectClock=yes (issue #14).

``ProtectClock=yes`` makes even a read-only adjtimex fail with EPERM; the probe must then read
systemd-timesyncd's flag file (pointed at a temporary path here), and nothing on the decision
path may start a process: a ``sys.addaudithook`` hook records every process-creation event
while 1,000 decisions run.
"""

import ctypes
import errno
import sys

import pytest

from device.clock_source import ClockSource, SyncProbe, read_adjtimex
from device.config import parse_config
from device.decide import Decider, Policy
from protocol.clock import ClockState
from protocol.reasons import Reason
from protocol.trust import open_trust_list, root_keyring
from tests.support.device_pipeline import Pki

SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec", "os.system"}
)
_spawned: list[str] | None = None  # set while a test watches; audit hooks cannot be removed


def _audit(event: str, _args: tuple) -> None:
    if _spawned is not None and event in SPAWN_EVENTS:
        _spawned.append(event)


sys.addaudithook(_audit)


class Watch:
    """Records process-creation audit events inside a ``with`` block."""

    def __enter__(self) -> list[str]:
        global _spawned
        _spawned = []
        return _spawned

    def __exit__(self, *exc: object) -> None:
        global _spawned
        _spawned = None


def test_the_audit_hook_sees_a_fork():
    """The watch itself works: a subprocess is seen (else the tests below prove nothing)."""
    import subprocess

    with Watch() as spawned:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert "subprocess.Popen" in spawned


def eperm() -> ClockState:
    raise PermissionError(errno.EPERM, "Operation not permitted")


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("CHOT_CLOCK_STATE", raising=False)


def test_refused_adjtimex_falls_back_to_the_timesyncd_flag(tmp_path):
    marker = tmp_path / "synchronized"
    calls = []

    def refused() -> ClockState:
        calls.append(1)
        return eperm()

    probe = SyncProbe(marker=marker, adjtimex=refused)
    assert probe() is ClockState.UNKNOWN  # not synchronised yet
    marker.touch()  # timesyncd's first synchronisation
    assert probe() is ClockState.SYNCED
    marker.unlink()  # a reboot empties /run
    assert probe() is ClockState.UNKNOWN
    assert calls == [1]  # refused once: the hardening does not change while the unit runs


def test_a_permitted_adjtimex_is_the_kernels_word_over_the_flag(tmp_path):
    marker = tmp_path / "synchronized"
    marker.touch()
    assert SyncProbe(marker=marker, adjtimex=lambda: ClockState.UNKNOWN)() is ClockState.UNKNOWN
    assert SyncProbe(marker=tmp_path / "none", adjtimex=lambda: ClockState.SYNCED)() is (
        ClockState.SYNCED
    )


def test_the_override_still_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CHOT_CLOCK_STATE", "bounded")
    assert SyncProbe(marker=tmp_path / "none", adjtimex=eperm)() is ClockState.BOUNDED


class RefusingLibc:
    """A C library whose adjtimex is refused by seccomp: -1 with errno EPERM."""

    @staticmethod
    def adjtimex(_timex: object) -> int:
        ctypes.set_errno(errno.EPERM)
        return -1


def test_read_adjtimex_turns_eperm_into_permission_error():
    with pytest.raises(PermissionError):
        read_adjtimex(RefusingLibc())


def test_the_real_adjtimex_answers_without_forking():
    """Here it is permitted or refused (containers differ); either way no process starts."""
    with Watch() as spawned:
        try:
            state = read_adjtimex()
        except PermissionError:
            state = None
        SyncProbe()()
    assert state in (None, ClockState.SYNCED, ClockState.UNKNOWN)
    assert spawned == []


@pytest.mark.parametrize("adjtimex", [eperm, read_adjtimex], ids=["protect-clock", "real"])
def test_a_thousand_decisions_start_no_process(tmp_path, adjtimex):
    pki = Pki()
    trust = open_trust_list(pki.trust_list(), root_keyring([bytes(pki.root.verify_key)]))
    marker = tmp_path / "synchronized"
    marker.touch()
    probe = SyncProbe(marker=marker, adjtimex=adjtimex)
    source = ClockSource(probe=probe, probe_interval_s=0)  # asked on every decision
    decider = Decider(trust, None, Policy.make(debounce_s=0, duplicate_window_s=0), source.read)
    passes = [pki.make_pass(i) for i in range(50)]
    reasons = set()
    with Watch() as spawned:
        for i in range(1000):
            reasons.add(decider.decide(passes[i % len(passes)]).reason)
    assert spawned == []
    if adjtimex is eperm:
        assert reasons == {Reason.OK}  # the flag file made the clock trusted
    else:
        assert reasons <= {Reason.OK, Reason.CLOCK_UNTRUSTED}


def test_the_device_config_points_the_probe_at_its_flag_file(tmp_path):
    from harness.device_config import write_device

    marker = tmp_path / "flag"
    config = write_device(
        tmp_path, Pki(), clock={"timesyncd_marker": str(marker), "probe_interval_s": 0}
    )
    assert config.clock.timesyncd_marker == marker
    default = parse_config(
        {
            "device": {"id": "u1", "site": "S1", "signing_key_file": "k"},
            "trust": {
                "root_public_keys": [Pki().root_hex],
                "gateway_public_keys": {"hn01-gw": Pki().root_hex},
            },
            "camera": {"source": "keyboard"},
        },
        tmp_path,
    )
    assert str(default.clock.timesyncd_marker) == "/run/systemd/timesync/synchronized"
    assert default.clock.probe_interval_s == 10
