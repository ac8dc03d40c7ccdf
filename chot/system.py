"""A whole chot site on one machine: provisioned with the ops tool, run as real processes.

Used by `chot demo` and by the end-to-end tests, so both exercise the deployment shape: a
private Mosquitto with the generated TLS + dynamic-security config (the gateway gives the units
their logins from the registry), the central store service, the gateway service, and scanner
units built from their provisioned bundles.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from protocol.pass_v1 import PassClaims, encode_pass
from provisioning import toml_out
from provisioning.broker import write_broker_config, write_local_config
from provisioning.home import OpsHome

log = logging.getLogger(__name__)

SITE = "DEMO-01"
GATEWAY = "demo-gw"
OPERATOR = "operator"
HOUR = 3600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


@dataclass
class PassMix:
    """The passes people hold up at the demo's checkpoints, by what should happen to them."""

    valid: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    forged: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # QR codes that are not chot passes

    def queue(self, device_index: int) -> list[str]:
        """One device's queue: mostly valid passes, the bad ones spread in between. The list
        cycles, so valid passes come round again and are flagged `duplicate_recent`."""
        kinds = [self.expired, self.forged, self.revoked, self.unreadable]
        bad = [group[i % len(group)] for i in range(3) for group in kinds]  # round robin
        out: list[str] = []
        valid = self.valid[device_index::4] or self.valid
        for i, text in enumerate(valid):
            out.append(text)
            if i % 2 == 0:
                out.append(bad[(i // 2 + device_index * 2) % len(bad)])
        return out


def forged_pass(stranger: SigningKey, *, now: int) -> str:
    """A well-formed, unexpired declaration pass signed by `stranger`, an issuer nobody
    trusts (the demo and the e2e harness show it refused as unknown_kid)."""
    claims = PassClaims(
        iss="VN-HN",
        iat=now - 600,
        exp=now + 72 * HOUR,
        cti=os.urandom(16),
        sub=os.urandom(16),
        kind="declaration",
    )
    return encode_pass(claims, stranger)


def make_passes(home: OpsHome, *, now: int, valid: int = 60) -> PassMix:
    """Issue the demo's passes with the home's issuer key; revoke some (re-signing the list)."""
    mix = PassMix()
    for i in range(valid):
        text, _ = home.issue_pass(kind="declaration", doc_number=f"0010850{i:05d}", now=now - 600)
        mix.valid.append(text)
    for i in range(3):
        text, _ = home.issue_pass(
            kind="declaration", doc_number=f"0019990{i:05d}", now=now - 80 * HOUR
        )
        mix.expired.append(text)
    stranger = SigningKey.generate()  # an issuer nobody trusts
    for _ in range(3):
        mix.forged.append(forged_pass(stranger, now=now))
    for i in range(3):
        text, claims = home.issue_pass(kind="declaration", doc_number=f"0017770{i:05d}", now=now)
        home.revoke_pass(claims.pass_ref, now=now)
        mix.revoked.append(text)
    mix.unreadable = ["https://example.vn/menu", "WIFI:S:cafe;T:WPA;P:12345678;;"]
    return mix


@dataclass
class ProvisionedSite:
    workdir: Path
    home: OpsHome
    broker_port: int
    central_port: int
    web_port: int
    operator_password: str
    gateway_config: Path
    device_configs: list[Path]
    central_url: str  # store URL: sqlite:///… or postgresql://…
    broker_conf: Path

    @property
    def web_url(self) -> str:
        """The status page: HTTPS with the web certificate the bundle got from the site CA."""
        return f"https://127.0.0.1:{self.web_port}"

    @property
    def web_ca(self) -> Path:
        """The site CA that signed the status page's certificate (httpx: `verify=`)."""
        return self.gateway_config.parent / "ca.crt"


def provision_site(
    workdir: Path,
    *,
    devices: int = 4,
    central_store: str | None = None,
    arrival_per_min: float = 30.0,
    fps: float = 8.0,
    now: int | None = None,
) -> ProvisionedSite:
    """Everything an ops team would do for a new site, with the real tool, into `workdir`."""
    now = int(now or time.time())
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # the issuer key must predate the expired passes the demo shows
    home = OpsHome.init(workdir / "ops", now=now - 100 * HOUR)
    mix = make_passes(home, now=now)
    home.sign_trust_list(now=now)
    broker_port, central_port, web_port = free_port(), free_port(), free_port()
    device_configs = []
    for i in range(1, devices + 1):
        bundle = home.add_device(
            SITE,
            f"demo-lane{i}",
            lane=f"lane-{i}",
            out=workdir / "devices" / f"demo-lane{i}",
            broker_host="127.0.0.1",
            broker_port=broker_port,
            camera_source="synthetic",
            gpio_backend="simulated",
        )
        passes_file = bundle.folder / "passes.txt"
        passes_file.write_text("\n".join(mix.queue(i - 1)) + "\n")
        config = bundle.folder / "device.toml"
        toml_out.edit(
            config,
            camera={
                "source": "synthetic",
                "passes_file": "passes.txt",
                "fps": fps,
                "arrival_per_min": arrival_per_min,
                "hold_s": 1.0,
                "seed": i,
                "width": 640,
                "height": 480,
                "difficulty": "normal",
            },
            policy={"debounce_s": 3, "duplicate_window_s": 1800},
            mqtt={"heartbeat_s": 5},
        )
        device_configs.append(config)
    password = os.urandom(9).hex()
    home.add_operator(SITE, OPERATOR, password)
    gateway = home.add_gateway(
        SITE, GATEWAY, out=workdir / "gateway", central_url=f"http://127.0.0.1:{central_port}"
    )
    gateway_config = gateway.folder / "gateway.toml"
    toml_out.edit(
        gateway_config,
        web={
            "enabled": True,
            "host": "127.0.0.1",
            "port": web_port,
            "users_file": "operators.json",
        },
        root={"load_interval_s": 10},
    )
    broker_dir = workdir / "broker"
    write_broker_config(home, SITE, broker_dir)
    broker_conf = write_local_config(broker_dir, broker_port)
    store = central_store or f"sqlite:///{workdir / 'central.db'}"
    return ProvisionedSite(
        workdir,
        home,
        broker_port,
        central_port,
        web_port,
        password,
        gateway_config,
        device_configs,
        store,
        broker_conf,
    )


class Service:
    """One child process with its log in the work dir; stopped with SIGTERM, or killed."""

    def __init__(self, name: str, argv: list[str], workdir: Path, port: int | None = None) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.log_path = workdir / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Service":
        log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        if wait and self.port:
            try:
                wait_for_port(self.port, proc=self.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(
                    f"{self.name} did not start ({exc}); see {self.log_path}"
                ) from None
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """kill -9: a power cut or an OOM kill."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


def chot_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "chot", *args]


def site_services(site: ProvisionedSite) -> dict[str, Service]:
    mosquitto = os.environ.get("CHOT_MOSQUITTO", "/usr/sbin/mosquitto")
    registry = site.home.path / "registry.json"
    return {
        "broker": Service(
            "broker", [mosquitto, "-c", str(site.broker_conf)], site.workdir, site.broker_port
        ),
        "central": Service(
            "central",
            chot_argv(
                "central",
                "serve",
                "--store",
                site.central_url,
                "--registry",
                str(registry),
                "--port",
                str(site.central_port),
            ),
            site.workdir,
            site.central_port,
        ),
        "gateway": Service(
            "gateway",
            chot_argv("gateway", "run", "--config", str(site.gateway_config)),
            site.workdir,
            site.web_port,
        ),
    }
