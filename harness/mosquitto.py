"""A real Mosquitto broker for tests and benchmarks: own config, own free port, own data dir.

Tests never mock the broker. `Broker` writes a config (optionally with password file, ACL and
TLS), starts `mosquitto -c`, waits until the port accepts connections, and can be killed with
SIGKILL and restarted on the same port with its persistence intact.
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.polling import WaitTimeout, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False  # True: clients must present a cert from cafile


class Broker:
    """One mosquitto process. Use `with Broker(...) as b:` or start()/stop()."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        tls: TlsFiles | None = None,
        extra_conf: str = "",
        port: int | None = None,
        conf_text: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        if conf_text is not None:  # a complete config, e.g. one provisioning generated
            self.conf_path.write_text(conf_text)
        else:
            self.conf_path.write_text(self._config(users, acl, tls, extra_conf))

    def _config(self, users, acl, tls, extra_conf) -> str:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            # mosquitto started as root drops to user "mosquitto", which cannot read our 0600
            # files in a tmp dir: stay the user running the tests
            f"user {getpass.getuser()}",
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {data}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
        ]
        if users is not None:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            for user, password in users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                )
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        if tls is not None:
            lines += [f"cafile {tls.cafile}", f"certfile {tls.certfile}", f"keyfile {tls.keyfile}"]
            if tls.require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        lines.append(extra_conf)
        return "\n".join(lines) + "\n"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_until(lambda: port_open(self.host, self.port), 10, message=f"port {self.port}")
        except WaitTimeout:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Clean stop (SIGTERM): mosquitto saves its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """kill -9: what a power cut or OOM does to the broker."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
