"""chot-firstboot adopts a bundle from the boot partition: secrets root-only in credentials/,
the rest readable, nothing left on the card, and a broken bundle leaves everything as it was."""

import os
import stat
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "scanner" / "chot-firstboot"
BUNDLE = {
    "device.toml": "[device]\nid = 'u1'\n",
    "device.key": "ab" * 32 + "\n",
    "mqtt.password": "s3cret\n",
    "trust.cose": "trust",
    "ca.crt": "cert",
}


def _firstboot(src: Path, etc: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CHOT_ETC=str(etc))
    return subprocess.run([str(SCRIPT), str(src)], env=env, capture_output=True, text=True)


def _bundle(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)  # a FAT partition shows every file like this


def test_bundle_is_moved_with_owners_and_modes_and_shredded(tmp_path: Path) -> None:
    src, etc = tmp_path / "boot" / "chot", tmp_path / "etc" / "chot"
    _bundle(src, BUNDLE)
    result = _firstboot(src, etc)
    assert result.returncode == 0, result.stderr
    assert not src.exists(), "the copy on the boot partition must be gone"
    creds = etc / "credentials"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    for name in ("device.key", "mqtt.password"):
        st = (creds / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), name
        assert (creds / name).read_text() == BUNDLE[name]
        assert not (etc / name).exists(), f"{name} must not sit beside the config"
    for name in ("device.toml", "trust.cose", "ca.crt"):
        st = (etc / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644), name
    assert not list(etc.glob(".incoming*")), "staging folder left behind"


def test_incomplete_bundle_is_left_alone(tmp_path: Path) -> None:
    src, etc = tmp_path / "boot" / "chot", tmp_path / "etc" / "chot"
    _bundle(src, {k: v for k, v in BUNDLE.items() if k != "device.key"})
    result = _firstboot(src, etc)
    assert result.returncode == 1
    assert "lacks device.key" in result.stdout
    assert (src / "device.toml").exists() and not etc.exists()


def test_the_time_source_drop_in_reaches_timesyncd(tmp_path: Path) -> None:
    """The bundle's timesyncd drop-in (NTP = the site gateway) is installed where timesyncd
    reads it, and nothing is left on the card."""
    src, etc = tmp_path / "boot" / "chot", tmp_path / "etc" / "chot"
    timesyncd = tmp_path / "etc" / "systemd" / "timesyncd.conf.d"
    _bundle(src, BUNDLE)
    (src / "timesyncd.conf.d").mkdir()
    (src / "timesyncd.conf.d" / "chot.conf").write_text("[Time]\nNTP=gw.hn01.lan\nFallbackNTP=\n")
    env = dict(os.environ, CHOT_ETC=str(etc), CHOT_TIMESYNCD_DIR=str(timesyncd))
    result = subprocess.run([str(SCRIPT), str(src)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    installed = timesyncd / "chot.conf"
    assert "NTP=gw.hn01.lan" in installed.read_text()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    assert not src.exists(), "the drop-in must not stay on the boot partition"
    assert "time source: NTP=gw.hn01.lan" in result.stdout
