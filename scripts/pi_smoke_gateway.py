"""The gateway half of `make pi-smoke`: chot-gateway installed and serving in an arm64 root.

A fresh copy of the cached arm64 root; `apt install ./chot-gateway_*_arm64.deb` from the
mirror; a bundle from `chot provision gateway add` put in place as packaging/README.md says
(config and public files in /etc/chot, every 0600 file of the bundle in /etc/chot/secrets);
then chot-gateway.service's own ExecStart as its User= with the environment systemd would give
it, plus a notify socket (Type=notify, WatchdogSec=). No broker and no central are reachable:
the gateway must still say READY=1, answer /healthz over HTTPS on loopback (checked inside the
root against the site CA), stay up while paho retries, and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pi_smoke_root import CACHE, Chroot, Service, build_package, fresh_root, log

UNIT = "/lib/systemd/system/chot-gateway.service"
ROOT_NAME = "smoke-gateway-root"
VENV_CHOT = "opt/chot/gateway/venv/bin/chot"
SITE, GATEWAY_ID = "smoke-site", "smoke-gw"
UNREACHABLE_PORT = 9  # discard: nothing listens, neither broker nor central answers
WORK = "/root/gateway-smoke"  # inside the root: the bundle on its way, the probe, the log
STATE_DIR = "/var/lib/chot-gateway"  # the unit's StateDirectory=
START_WAIT_S = 300  # READY=1 and /healthz under emulation
ALIVE_S = 35  # then it must stay up this long without a broker (past one watchdog period)

# Runs inside the root with the package's python, as root: binds the notify socket, starts
# the service command, waits for READY=1 and a 200 from /healthz, keeps it running ALIVE_S,
# then SIGTERM. Prints one JSON line.
PROBE = r"""
import json, os, signal, socket, ssl, subprocess, sys, time, urllib.request
command, notify_path, url, cafile, log_path = sys.argv[1:6]
start_wait_s, alive_s, stop_s = (float(v) for v in sys.argv[6:9])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(notify_path)
os.chmod(notify_path, 0o666)
sock.settimeout(0.5)
context = ssl.create_default_context(cafile=cafile)
out = {"ready": False, "watchdog_pings": 0, "healthz": None, "healthz_after": None,
       "alive_after_s": None, "exit": None, "stopped_in_s": None}
log = open(log_path, "wb")
proc = subprocess.Popen(["/bin/sh", "-c", "exec " + command], stdout=log, stderr=subprocess.STDOUT)
t0 = time.monotonic()

def drain():
    try:
        while True:
            message = sock.recv(4096).decode()
            out["ready"] = out["ready"] or "READY=1" in message.split("\n")
            out["watchdog_pings"] += "WATCHDOG=1" in message.split("\n")
    except (TimeoutError, socket.timeout, BlockingIOError):
        pass

def healthz():
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()[:300]}
    except OSError as exc:
        out["last_error"] = repr(exc)[:300]
        return None

while time.monotonic() - t0 < start_wait_s and proc.poll() is None:
    drain()
    if out["ready"]:
        out["healthz"] = healthz()
        if out["healthz"] and out["healthz"]["status"] == 200:
            break
out["started_in_s"] = round(time.monotonic() - t0, 1)
if out["healthz"] and proc.poll() is None:
    t1 = time.monotonic()
    while time.monotonic() - t1 < alive_s and proc.poll() is None:
        drain()
    if proc.poll() is None:
        out["alive_after_s"] = alive_s
        out["healthz_after"] = healthz()
if proc.poll() is None:
    t2 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(stop_s)
        out["stopped_in_s"] = round(time.monotonic() - t2, 1)
    except subprocess.TimeoutExpired:
        proc.kill()  # as systemd does after TimeoutStopSec=
        proc.wait()
drain()
out["exit"] = proc.returncode
print(json.dumps(out))
"""


@dataclass(frozen=True)
class GatewayResult:
    installed: bool
    started: bool


def free_port() -> int:
    """A loopback port nobody uses now: the chroot shares the host's network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chot(*args: str, stdin: str | None = None) -> None:
    """The ops tool, as an operator types it."""
    subprocess.run(
        [sys.executable, "-m", "chot", "provision", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def provision(work: Path, web_port: int) -> Path:
    """An ops home, a gate operator and one gateway bundle (`chot provision gateway add`),
    with the site broker and the central both on ports where nothing answers."""
    home = str(work / "ops")
    chot("init", home)
    password = secrets.token_urlsafe(16)
    chot("operator", "add", "--home", home, "--password-stdin", SITE, "gate1", stdin=password)
    bundle = work / "bundle"
    central = f"http://127.0.0.1:{UNREACHABLE_PORT}"
    chot(
        "gateway",
        "add",
        "--home",
        home,
        "--out",
        str(bundle),
        "--central-url",
        central,
        "--broker-port",
        str(UNREACHABLE_PORT),
        SITE,
        GATEWAY_ID,
    )
    # The two install steps packaging/README.md asks of the administrator.
    config = bundle / "gateway.toml"
    text = config.read_text()
    for old, new in (
        ('state_dir = "state"', f'state_dir = "{STATE_DIR}"'),
        ("[web]\nenabled = false", f"[web]\nenabled = true\nport = {web_port}"),
    ):
        assert old in text, f"gateway.toml changed shape: no {old!r}"
        text = text.replace(old, new, 1)
    config.write_text(text)
    return bundle


def install_bundle(bundle: Path) -> str:
    """Shell commands (as root in the root) putting the bundle where the package expects it:
    secrets (the bundle's 0600 files) in /etc/chot/secrets, the rest in /etc/chot."""
    steps = ["install -d -m 0755 /etc/chot", "install -d -m 0700 /etc/chot/secrets"]
    for item in sorted(bundle.iterdir()):
        source = f"{WORK}/bundle/{item.name}"
        if item.is_dir():
            steps.append(f"cp -r {source} /etc/chot/{item.name}")
        elif item.stat().st_mode & 0o077 == 0:
            steps.append(f"install -m 0600 {source} /etc/chot/secrets/{item.name}")
        else:
            steps.append(f"install -m 0644 {source} /etc/chot/{item.name}")
    return "; ".join(steps)


def gateway_smoke(reuse: bool) -> GatewayResult:
    deb = build_package("gateway")
    log(f"built {deb.name}")
    reuse = reuse and (CACHE / ROOT_NAME / VENV_CHOT).exists()
    root = CACHE / ROOT_NAME if reuse else fresh_root(ROOT_NAME)
    chroot = Chroot(root)
    t0 = time.monotonic()
    if reuse:
        chroot.sh(
            f"rm -rf /etc/chot/gateway.toml /etc/chot/secrets/* /etc/chot/documents"
            f" /etc/chot/chrony.conf.d {STATE_DIR} {WORK}"
        )
    else:
        chroot.apt_install(deb)
    installed = (root / VENV_CHOT).exists()
    log(f"gateway installed with apt in {time.monotonic() - t0:.0f} s: {installed}")
    if not installed:
        return GatewayResult(False, False)

    web_port = free_port()
    work = root / WORK.lstrip("/")
    work.mkdir(mode=0o700)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = provision(Path(tmp), web_port)
        subprocess.run(["cp", "-a", str(bundle), str(work / "bundle")], check=True)
        chroot.sh(install_bundle(bundle) + f"; rm -rf {WORK}/bundle")
    log(f"gateway bundle in /etc/chot, status page on port {web_port}")

    service = Service.read(root, UNIT)
    unit = service.unit
    notify = "/run/chot-smoke-notify"
    command = service.command(unit.exec_start, service.notify_env(notify))
    (work / "probe.py").write_text(PROBE)
    probe = [
        f"/{VENV_CHOT.rsplit('/', 1)[0]}/python",
        f"{WORK}/probe.py",
        command,
        notify,
        f"https://127.0.0.1:{web_port}/healthz",  # a minbase root has no /etc/hosts
        "/etc/chot/ca.crt",
        f"{WORK}/service.log",
        str(START_WAIT_S),
        str(ALIVE_S),
        str(max(unit.stop_timeout_s, 60)),  # emulation is slow: at least a minute
    ]
    log(f"running ExecStart as {unit.user}: {shlex.join(unit.exec_start)}")
    t0 = time.monotonic()
    try:
        result = chroot.sh(
            "; ".join(service.prepare()) + "; " + shlex.join(probe),
            timeout=START_WAIT_S + ALIVE_S + 300,
        )
    except subprocess.CalledProcessError as exc:
        log(f"gateway probe failed:\n{exc.stdout[-4000:]}\n{exc.stderr[-4000:]}")
        return GatewayResult(installed, False)
    finally:
        service_log = work / "service.log"
        if service_log.exists():
            print(service_log.read_text(errors="replace")[-4000:], file=sys.stderr)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    log(f"gateway ran {time.monotonic() - t0:.0f} s: {json.dumps(seen)}")
    return GatewayResult(installed, started(seen, root))


def started(seen: dict, root: Path) -> bool:
    """READY=1, /healthz 200 with the gateway's id, still up and healthy after ALIVE_S with
    no broker, its store in the StateDirectory, and a clean stop on SIGTERM."""
    healthy = [
        bool(check) and check["status"] == 200 and check["body"]["gateway"] == GATEWAY_ID
        for check in (seen["healthz"], seen["healthz_after"])
    ]
    store = root / STATE_DIR.lstrip("/") / "gateway.db"
    log(f"store {store.relative_to(root)}: {'present' if store.exists() else 'missing'}")
    return seen["ready"] and all(healthy) and store.exists() and seen["exit"] == 0
