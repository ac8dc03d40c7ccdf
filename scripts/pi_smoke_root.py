"""The arm64 root and systemd's part of `make pi-smoke`, shared by the scanner and gateway checks.

`fresh_root` extracts the cached arm64 bookworm root; `Chroot` runs commands in it (private
mounts of proc, dev, sys, a tmpfs /run); `Unit` reads the [Service] settings of a shipped unit
file and `Service` turns them into what systemd does before ExecStart: the directories owned
by User=, the LoadCredential= copies in $CREDENTIALS_DIRECTORY, the environment, the user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chot"


def log(message: str) -> None:
    print(f"pi-smoke: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kwargs)


@dataclass
class Unit:
    """The [Service] settings of a unit file the smoke needs, as systemd would read them."""

    exec_start: list[str] = field(default_factory=list)
    exec_stop_post: list[str] = field(default_factory=list)
    user: str = "root"
    group: str = ""  # Group=; empty: User='s own group
    environment: dict[str, str] = field(default_factory=dict)
    state_directory: str = ""
    runtime_directory: str = ""
    working_directory: str = "/"
    credentials: dict[str, str] = field(default_factory=dict)  # name -> source path
    watchdog_sec: int = 0
    stop_timeout_s: int = 90

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
            elif key == "Group":
                unit.group = value
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
            elif key == "WatchdogSec":
                unit.watchdog_sec = int(value)
            elif key == "TimeoutStopSec":
                unit.stop_timeout_s = int(value)
        return unit


@dataclass(frozen=True)
class Service:
    """One unit's commands run in the root as systemd would run them (no systemd in a chroot)."""

    name: str  # the unit file's name, e.g. chot-device.service
    unit: Unit

    @classmethod
    def read(cls, root: Path, unit_path: str) -> Service:
        return cls(Path(unit_path).name, Unit.parse((root / unit_path.lstrip("/")).read_text()))

    @property
    def group(self) -> str:
        return self.unit.group or self.unit.user

    @property
    def env(self) -> dict[str, str]:
        unit = self.unit
        env = dict(unit.environment)
        if unit.state_directory:
            env["STATE_DIRECTORY"] = f"/var/lib/{unit.state_directory}"
        if unit.runtime_directory:
            env["RUNTIME_DIRECTORY"] = f"/run/{unit.runtime_directory}"
        if unit.credentials:
            env["CREDENTIALS_DIRECTORY"] = f"/run/credentials/{self.name}"
        return env

    def notify_env(self, socket_path: str) -> dict[str, str]:
        """What systemd adds for Type=notify with WatchdogSec=: where to send READY=1 and
        WATCHDOG=1, and how often."""
        env = {"NOTIFY_SOCKET": socket_path}
        if self.unit.watchdog_sec:
            env["WATCHDOG_USEC"] = str(self.unit.watchdog_sec * 1_000_000)
        return env

    def prepare(self) -> list[str]:
        """Shell commands for what systemd does before ExecStart: the directories owned by
        User=, the credentials copied to a directory only the service can read."""
        env, owner = self.env, f"-o {self.unit.user} -g {self.group}"
        steps = [
            f"install -d -m 0750 {owner} {env[name]}"
            for name in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY")
            if name in env
        ]
        if "CREDENTIALS_DIRECTORY" in env:
            creds = env["CREDENTIALS_DIRECTORY"]
            steps.append(f"install -d -m 0500 {owner} {creds}")
            for name, source in self.unit.credentials.items():
                steps.append(f"install -m 0400 {owner} {source} {creds}/{name}")
        return steps

    def command(self, argv: list[str], extra_env: dict[str, str] | None = None) -> str:
        """`argv` as User= (setuid/setgid/supplementary groups, no capabilities) in
        WorkingDirectory= with the unit's environment."""
        env = {**self.env, **(extra_env or {})}
        env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        cd_exec = f'cd {self.unit.working_directory} && exec "$@"'
        return (
            f"env {env_args} setpriv --reuid={self.unit.user} --regid={self.group} "
            f"--init-groups --inh-caps=-all -- /bin/sh -c {shlex.quote(cd_exec)} "
            f"sh {shlex.join(argv)}"
        )


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

    def apt_install(self, deb: Path) -> None:
        """`apt install ./the.deb` from the root's own apt sources (the host's mirror)."""
        shutil.copy(deb, self.root / "tmp" / deb.name)
        try:
            self.sh(
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
                f"apt-get install -y -q --no-install-recommends /tmp/{deb.name}",
                timeout=1800,
            )
        except subprocess.CalledProcessError as exc:
            log(f"apt install of {deb.name} failed:\n{exc.stdout[-4000:]}\n{exc.stderr[-4000:]}")
            raise


def build_package(role: str) -> Path:
    out = run([str(REPO / "packaging/build-deb"), role, "arm64"], capture_output=True)
    return Path(out.stdout.strip().splitlines()[-1])


def fresh_root(name: str) -> Path:
    """A new copy of the cached arm64 root in the cache folder `name`."""
    tarball = Path(run([str(REPO / "packaging/arm64-root")], capture_output=True).stdout.strip())
    root = CACHE / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)])
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    return root
