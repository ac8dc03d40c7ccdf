"""`make pi-smoke`: the chot-scanner package installed and deciding in an arm64 Debian 12 root.

Steps: build the arm64 .deb; extract the cached arm64 bookworm root (packaging/arm64-root,
debootstrap under qemu-user-static); `apt install ./chot-scanner_*.deb` there from the Debian
mirror; provision a device and put its bundle on a fake boot partition; run the packaged
chot-firstboot; then run chot-device.service's own ExecStart as its User= with the environment
systemd would give it (StateDirectory, RuntimeDirectory, LoadCredential copies in
$CREDENTIALS_DIRECTORY, Environment=, WorkingDirectory=) over recorded frames of valid passes,
with no broker reachable; then its ExecStopPost. The last line printed is one JSON object:
{"arch": "aarch64", "installed": true, "decided": N, "outbox_events": N, "seconds": S}.
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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from device.camera import write_pgm  # noqa: E402
from device.synthetic import make_card_frame  # noqa: E402
from protocol.events import open_event  # noqa: E402
from provisioning.home import OpsHome  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chot"
UNIT = "/lib/systemd/system/chot-device.service"
FIRSTBOOT_UNIT = "/lib/systemd/system/chot-firstboot.service"
PASSES = 3  # distinct people in front of the camera
FRAMES_PER_PASS = 6
EMPTY_FRAMES = 4
RUN_TIMEOUT_S = 900


class _Reused(Exception):
    """The installed root of the last run is reused (--reuse-root)."""


def log(message: str) -> None:
    print(f"pi-smoke: {message}", file=sys.stderr, flush=True)


@dataclass
class Unit:
    """The [Service] settings of a unit file the smoke needs, as systemd would read them."""

    exec_start: list[str] = field(default_factory=list)
    exec_stop_post: list[str] = field(default_factory=list)
    user: str = "root"
    environment: dict[str, str] = field(default_factory=dict)
    state_directory: str = ""
    runtime_directory: str = ""
    working_directory: str = "/"
    credentials: dict[str, str] = field(default_factory=dict)  # name -> source path

    @classmethod
    def parse(cls, text: str) -> Unit:
        unit = cls()
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]":
                continue
            key, _, value = line.partition("=")
            if key == "ExecStart":
                unit.exec_start = shlex.split(value)
            elif key == "ExecStopPost":
                unit.exec_stop_post = shlex.split(value.lstrip("-"))
            elif key == "User":
                unit.user = value
            elif key == "Environment":
                for item in shlex.split(value):
                    name, _, val = item.partition("=")
                    unit.environment[name] = val
            elif key == "StateDirectory":
                unit.state_directory = value
            elif key == "RuntimeDirectory":
                unit.runtime_directory = value
            elif key == "WorkingDirectory":
                unit.working_directory = value
            elif key == "LoadCredential":
                name, _, source = value.partition(":")
                unit.credentials[name] = source
        return unit


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kwargs)


class Chroot:
    """Commands inside the arm64 root, in a private mount namespace (proc, dev, sys)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sh(self, script: str, *, timeout: float | None = None) -> subprocess.CompletedProcess:
        mounts = (
            f"mount -t proc proc {self.root}/proc && "
            f"mount --rbind /dev {self.root}/dev && "
            f"mount -t sysfs sys {self.root}/sys && "
            f"mount -t tmpfs tmpfs {self.root}/run && "
        )
        inner = shlex.join(["/bin/sh", "-ec", script])
        outer = (
            mounts
            + f"exec chroot {self.root} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 {inner}"
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", outer],
            check=True,
            text=True,
            capture_output=True,
            timeout=timeout,
        )


def build_package() -> Path:
    out = run([str(REPO / "packaging/build-deb"), "scanner", "arm64"], capture_output=True)
    return Path(out.stdout.strip().splitlines()[-1])


def fresh_root() -> Path:
    tarball = Path(run([str(REPO / "packaging/arm64-root")], capture_output=True).stdout.strip())
    root = CACHE / "smoke-root"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)])
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    return root


def provision(work: Path) -> tuple[Path, list[str], bytes]:
    """An ops home, one device bundle (files camera, simulated lights, unreachable broker)
    and valid passes. The bundle is the one `chot provision device add` writes."""
    home = OpsHome.init(work / "ops")
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


def main() -> int:
    if os.geteuid() != 0:
        log("needs root (debootstrap, chroot, mounts)")
        return 2
    started = time.monotonic()
    run([str(REPO / "scripts/bootstrap-pi"), "smoke"])
    deb = build_package()
    log(f"built {deb.name}")
    # --reuse-root (development only): keep the last run's installed root, reset its state.
    reuse = "--reuse-root" in sys.argv and (CACHE / "smoke-root/opt/chot/venv/bin/chot").exists()
    root = CACHE / "smoke-root" if reuse else fresh_root()
    chroot = Chroot(root)
    arch = chroot.sh("uname -m").stdout.strip()
    log(f"arm64 root ready ({arch})")
    if reuse:
        chroot.sh(
            "rm -rf /etc/chot/device.toml /etc/chot/credentials /var/lib/chot /opt/chot-smoke"
            " /boot/firmware/chot"
        )

    shutil.copy(deb, root / "tmp" / deb.name)
    t0 = time.monotonic()
    try:
        if reuse:
            raise _Reused
        chroot.sh(
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
            f"apt-get install -y -q --no-install-recommends /tmp/{deb.name}",
            timeout=1800,
        )
    except _Reused:
        pass
    except subprocess.CalledProcessError as exc:
        log(f"apt install failed:\n{exc.stdout[-4000:]}\n{exc.stderr[-4000:]}")
        raise
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
    firstboot = Unit.parse((root / FIRSTBOOT_UNIT.lstrip("/")).read_text())
    chroot.sh(shlex.join(firstboot.exec_start))
    assert not (root / "boot/firmware/chot").exists(), "bundle left on the boot partition"
    key = root / "etc/chot/credentials/device.key"
    assert key.stat().st_uid == 0 and (key.stat().st_mode & 0o777) == 0o600, "device.key mode"

    unit = Unit.parse((root / UNIT.lstrip("/")).read_text())
    env = dict(unit.environment)
    creds = f"/run/credentials/{Path(UNIT).name}"
    env.update(
        STATE_DIRECTORY=f"/var/lib/{unit.state_directory}",
        RUNTIME_DIRECTORY=f"/run/{unit.runtime_directory}",
        CREDENTIALS_DIRECTORY=creds,
    )
    # What systemd does before ExecStart: the directories owned by User=, the credentials
    # copied to a directory only the service can read, then setuid/setgid/supplementary groups.
    prepare = [
        f"install -d -m 0750 -o {unit.user} -g {unit.user} {env['STATE_DIRECTORY']}",
        f"install -d -m 0750 -o {unit.user} -g {unit.user} {env['RUNTIME_DIRECTORY']}",
        f"install -d -m 0500 -o {unit.user} -g {unit.user} {creds}",
    ]
    for name, source in unit.credentials.items():
        prepare.append(f"install -m 0400 -o {unit.user} -g {unit.user} {source} {creds}/{name}")
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())

    cd_exec = f'cd {unit.working_directory} && exec "$@"'

    def as_service(argv: list[str]) -> str:
        return (
            f"env {env_args} setpriv --reuid={unit.user} --regid={unit.user} --init-groups "
            f"--inh-caps=-all -- /bin/sh -c {shlex.quote(cd_exec)} "
            f"sh {shlex.join(argv)}"
        )

    log(f"running ExecStart as {unit.user}: {shlex.join(unit.exec_start)}")
    t0 = time.monotonic()
    try:
        result = chroot.sh(
            # ExecStopPost (lights-off) runs after the stop, in the same runtime directory
            "; ".join(prepare)
            + "; "
            + as_service(unit.exec_start)
            + " 2>&1; "
            + as_service(unit.exec_stop_post)
            + " 2>&1",
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        log(f"ExecStart failed:\n{exc.stdout[-4000:]}\n{exc.stderr[-4000:]}")
        raise
    seconds = time.monotonic() - t0
    service_log = result.stdout
    print(service_log[-3000:], file=sys.stderr)

    outbox = read_outbox(root / env["STATE_DIRECTORY"].lstrip("/"), public_key)
    summary = {
        "arch": arch,
        "installed": installed,
        "decided": outbox.decided,
        "outbox_events": outbox.events,
        "seconds": round(time.monotonic() - started, 1),
    }
    log(f"ExecStart ran {seconds:.1f} s; {outbox.pending} events pending (no broker)")
    print(json.dumps(summary), flush=True)
    ok = installed and arch == "aarch64" and outbox.events == PASSES == outbox.decided
    return 0 if ok else 1


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


if __name__ == "__main__":
    raise SystemExit(main())
