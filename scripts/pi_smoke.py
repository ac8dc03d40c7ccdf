"""`make pi-smoke`: chot-scanner and chot-gateway installed and running in arm64 Debian 12 roots.

Scanner: build the arm64 .deb; extract the cached arm64 bookworm root (packaging/arm64-root,
debootstrap under qemu-user-static); `apt install ./chot-scanner_*.deb` there from the Debian
mirror; provision a device and put its bundle on a fake boot partition; run the packaged
chot-firstboot; then run chot-device.service's own ExecStart as its User= with the environment
systemd would give it (scripts/pi_smoke_root.py: StateDirectory, RuntimeDirectory,
LoadCredential copies in $CREDENTIALS_DIRECTORY, Environment=, WorkingDirectory=) over recorded
frames of valid passes, with no broker reachable; then its ExecStopPost.
Gateway (scripts/pi_smoke_gateway.py): chot-gateway in a fresh copy of the root, a bundle from
`chot provision gateway add` in /etc/chot, its ExecStart until READY=1 and /healthz over HTTPS,
kept running with no broker, then SIGTERM.
The last line printed is one JSON object: {"arch": "aarch64", "installed": true, "decided": N,
"outbox_events": N, "gateway_installed": true, "gateway_started": true, "seconds": S}.
Runs as root (chroot, mounts); takes minutes under emulation. The emulated root has no time
sync (the host kernel reports none), so the unit's clock is only bounded by its documents and
valid passes are decided warn/clock_untrusted: amber, as on a Pi before NTP answers.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402
from pi_smoke_gateway import gateway_smoke  # noqa: E402
from pi_smoke_root import CACHE, Chroot, Service, build_package, fresh_root, log  # noqa: E402

from device.camera import write_pgm  # noqa: E402
from device.synthetic import make_card_frame  # noqa: E402
from protocol.events import open_event  # noqa: E402
from provisioning.home import OpsHome  # noqa: E402

UNIT = "/lib/systemd/system/chot-device.service"
FIRSTBOOT_UNIT = "/lib/systemd/system/chot-firstboot.service"
PASSES = 3  # distinct people in front of the camera
FRAMES_PER_PASS = 6
EMPTY_FRAMES = 4
RUN_TIMEOUT_S = 900


def provision(work: Path) -> tuple[Path, list[str], bytes]:
    """An ops home, one device bundle (files camera, simulated lights, unreachable broker)
    and valid passes. The bundle is the one `chot provision device add` writes."""
    home = OpsHome.init(work / "ops")
    # the site's gateway first: a unit that pins no gateway key refuses to start
    home.add_gateway("SMOKE-01", "smoke-gw", out=work / "gateway-bundle")
    bundle = work / "bundle"
    device = home.add_device(
        "SMOKE-01",
        "smoke-lane1",
        out=bundle,
        broker_host="127.0.0.1",
        broker_port=9,  # discard port: nothing listens, the unit decides offline
        camera_source="files",
        gpio_backend="simulated",
    )
    config = bundle / "device.toml"
    text = config.read_text()
    marker = 'source = "files"'
    assert marker in text, "bundle's [camera] section changed shape"
    config.write_text(text.replace(marker, marker + '\npaths = ["/opt/chot-smoke/frames"]', 1))
    passes = [
        home.issue_pass(kind="declaration", doc_number=f"00120300{i:04d}")[0] for i in range(PASSES)
    ]
    return bundle, passes, device.public_key


def _card(text: str | None, seed: int) -> np.ndarray:
    return make_card_frame(text, rng=np.random.default_rng(seed), difficulty="easy")


def record_frames(passes: list[str], folder: Path) -> int:
    """Frames as a camera would see them: each person holds a pass, then nobody."""
    folder.mkdir(parents=True)
    index = 0
    for n, text in enumerate(passes):
        for k in range(FRAMES_PER_PASS):
            write_pgm(folder / f"{index:05d}.pgm", _card(text, n * 100 + k))
            index += 1
        for k in range(EMPTY_FRAMES):
            write_pgm(folder / f"{index:05d}.pgm", _card(None, n * 100 + 50 + k))
            index += 1
    return index


@dataclass(frozen=True)
class OutboxCount:
    events: int
    pending: int
    decided: int  # scan events signed by the device's key, with a verdict


def read_outbox(state_dir: Path, public_key: bytes) -> OutboxCount:
    """Count the unit's outbox on the host, verifying every event's device signature."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("outbox.db", "outbox.db-wal"):
            if (state_dir / name).exists():
                shutil.copy(state_dir / name, Path(tmp) / name)
        db = sqlite3.connect(Path(tmp) / "outbox.db")
        rows = db.execute("select signed, state from events order by seq").fetchall()
        db.close()
    decided = 0
    for signed, _ in rows:
        event = open_event(signed, lambda _dev: public_key).event
        log(f"event seq {event.seq}: {event.verdict}/{event.reason} clock {event.clock}")
        decided += event.verdict in ("pass", "warn", "fail")
    pending = sum(1 for _, state in rows if state == "pending")
    return OutboxCount(events=len(rows), pending=pending, decided=decided)


@dataclass(frozen=True)
class ScannerResult:
    arch: str
    installed: bool
    outbox: OutboxCount

    @property
    def ok(self) -> bool:
        outbox = self.outbox
        return (
            self.installed and self.arch == "aarch64" and outbox.events == PASSES == outbox.decided
        )


def scanner_smoke(reuse: bool) -> ScannerResult:
    """chot-scanner installed with apt, first boot from a bundle, decisions with no broker."""
    deb = build_package("scanner")
    log(f"built {deb.name}")
    # --reuse-root (development only): keep the last run's installed root, reset its state.
    reuse = reuse and (CACHE / "smoke-root/opt/chot/venv/bin/chot").exists()
    root = CACHE / "smoke-root" if reuse else fresh_root("smoke-root")
    chroot = Chroot(root)
    arch = chroot.sh("uname -m").stdout.strip()
    log(f"arm64 root ready ({arch})")
    t0 = time.monotonic()
    if reuse:
        chroot.sh(
            "rm -rf /etc/chot/device.toml /etc/chot/credentials /var/lib/chot /opt/chot-smoke"
            " /boot/firmware/chot"
        )
    else:
        chroot.apt_install(deb)
    installed = (root / "opt/chot/venv/bin/chot").exists()
    numpy = chroot.sh(
        "/opt/chot/venv/bin/python -c 'import numpy; print(numpy.__version__, numpy.__file__)'"
    ).stdout.strip()
    log(f"venv numpy: {numpy}")
    installed = installed and "/usr/lib/python3/dist-packages/" in numpy
    log(f"installed with apt in {time.monotonic() - t0:.0f} s")

    with tempfile.TemporaryDirectory() as tmp:
        bundle, passes, public_key = provision(Path(tmp))
        boot = root / "boot/firmware/chot"
        boot.mkdir(parents=True)
        for item in bundle.iterdir():
            shutil.copy(item, boot / item.name)
        frames = record_frames(passes, root / "opt/chot-smoke/frames")
    log(f"bundle on the boot partition, {frames} recorded frames of {PASSES} passes")

    # First boot: the packaged script, as chot-firstboot.service runs it.
    chroot.sh(shlex.join(Service.read(root, FIRSTBOOT_UNIT).unit.exec_start))
    assert not (root / "boot/firmware/chot").exists(), "bundle left on the boot partition"
    key = root / "etc/chot/credentials/device.key"
    assert key.stat().st_uid == 0 and (key.stat().st_mode & 0o777) == 0o600, "device.key mode"

    service = Service.read(root, UNIT)
    unit = service.unit
    log(f"running ExecStart as {unit.user}: {shlex.join(unit.exec_start)}")
    t0 = time.monotonic()
    try:
        result = chroot.sh(
            # ExecStopPost (lights-off) runs after the stop, in the same runtime directory
            "; ".join(service.prepare())
            + "; "
            + service.command(unit.exec_start)
            + " 2>&1; "
            + service.command(unit.exec_stop_post)
            + " 2>&1",
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        log(f"ExecStart failed:\n{exc.stdout[-4000:]}\n{exc.stderr[-4000:]}")
        raise
    print(result.stdout[-3000:], file=sys.stderr)
    outbox = read_outbox(root / service.env["STATE_DIRECTORY"].lstrip("/"), public_key)
    log(f"ExecStart ran {time.monotonic() - t0:.1f} s; {outbox.pending} events pending (no broker)")
    return ScannerResult(arch, installed, outbox)


def main() -> int:
    if os.geteuid() != 0:
        log("needs root (debootstrap, chroot, mounts)")
        return 2
    started = time.monotonic()
    subprocess.run([str(REPO / "scripts/bootstrap-pi"), "smoke"], check=True)
    reuse = "--reuse-root" in sys.argv
    scanner = scanner_smoke(reuse)
    gateway = gateway_smoke(reuse)
    summary = {
        "arch": scanner.arch,
        "installed": scanner.installed,
        "decided": scanner.outbox.decided,
        "outbox_events": scanner.outbox.events,
        "gateway_installed": gateway.installed,
        "gateway_started": gateway.started,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0 if scanner.ok and gateway.installed and gateway.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
