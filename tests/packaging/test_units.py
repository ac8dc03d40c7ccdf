"""Every shipped systemd unit passes `systemd-analyze verify`, as installed by the packages.

The units are checked inside a scratch root (`--root`) laid out like an installed system:
the host's own unit library (targets the units order against), the shipped units in
/lib/systemd/system, and an executable at every path their Exec*= lines name (the real
chot entry point and the real firstboot script). So a missing binary, a misspelt directive
or a bad value fails the test; any diagnostic at all counts as a failure.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = [
    REPO / "device" / "chot-device.service",
    REPO / "device" / "chot-firstboot.service",
    REPO / "gateway" / "chot-gateway.service",
    REPO / "central" / "chot-central-retention.service",
    REPO / "central" / "chot-central-retention.timer",
]
# Where the packages put the programs the units run (packaging/build-deb).
PACKAGED_PROGRAMS = {
    "/usr/lib/chot/chot-firstboot": REPO / "packaging" / "scanner" / "chot-firstboot",
    # the console script pip puts in a venv, as postinst makes it
    "/opt/chot/venv/bin/chot": REPO / ".venv" / "bin" / "chot",
    "/opt/chot/gateway/venv/bin/chot": REPO / ".venv" / "bin" / "chot",
    "/opt/chot/central/venv/bin/chot": REPO / ".venv" / "bin" / "chot",
}
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _exec_paths(text: str) -> set[str]:
    paths = set()
    for match in re.finditer(r"^Exec\w+=([-@:+!]*)(\S+)", text, re.MULTILINE):
        paths.add(match.group(2))
    return paths


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("systemd-analyze") is None:
        subprocess.run(["scripts/bootstrap-pi", "deb"], cwd=REPO, check=True)
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    for unit in UNITS:
        shutil.copy(unit, root / "usr/lib/systemd/system" / unit.name)
        for path in _exec_paths(unit.read_text()):
            target = root / path.lstrip("/")
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = PACKAGED_PROGRAMS.get(path) or Path(shutil.which(Path(path).name) or path)
            assert source.exists(), f"{unit.name}: nothing provides {path}"
            shutil.copy(source, target)
            target.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies(installed_root: Path, unit: Path) -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--root",
            str(installed_root),
            f"/lib/systemd/system/{unit.name}",
        ],
        capture_output=True,
        text=True,
    )
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and out == "", out


def test_verify_catches_a_missing_program(installed_root: Path, tmp_path: Path) -> None:
    """The check is not vacuous: a unit whose ExecStart names nothing fails it."""
    broken = installed_root / "usr/lib/systemd/system/chot-broken.service"
    broken.write_text(
        (REPO / "device" / "chot-device.service")
        .read_text()
        .replace("/opt/chot/venv/bin/chot device run", "/opt/chot/nowhere/chot device run")
    )
    try:
        result = subprocess.run(
            [
                "systemd-analyze",
                "verify",
                "--root",
                str(installed_root),
                "/lib/systemd/system/chot-broken.service",
            ],
            capture_output=True,
            text=True,
        )
    finally:
        broken.unlink()
    assert result.returncode != 0
    assert "/opt/chot/nowhere/chot" in result.stderr


def test_scanner_unit_wiring() -> None:
    """What the issue asks of the scanner unit, read from the file that ships."""
    text = (REPO / "device" / "chot-device.service").read_text()
    assert "StateDirectory=chot" in text
    assert "LoadCredential=device.key:" in text and "LoadCredential=mqtt.password:" in text
    assert "Environment=LG_WD=/run/chot" in text and "WorkingDirectory=/run/chot" in text
    assert re.search(r"^ExecStopPost=-?/opt/chot/venv/bin/chot device lights-off ", text, re.M)
    assert "ReadWritePaths=/etc" not in text
