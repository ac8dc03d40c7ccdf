"""The login page against a real gateway process (`gateway run`, what systemd starts) with
production argon2 parameters (64 MiB per check), issue #13 item 4:

- 40 logins at once from 40 addresses: the process's peak memory (VmHWM) stays far below the
  unit's MemoryMax=300M, because only `login_concurrency` checks run at once (503 beyond);
- the login limits and a logout survive a restart (both live in the gateway's store).
"""

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from harness.mosquitto import free_port
from provisioning.tls import create_ca, create_server_cert
from tests.support.gateway_core import (
    ACL,
    ROOT,
    USERS,
    Site,
    start_gateway_process,
    wait_for,
)

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
OPERATOR, PASSWORD = "alice", "correct horse battery"
MEMORY_MAX = 300 * 1024 * 1024  # the gateway unit's MemoryMax=300M


class Gateway:
    """A gateway process with its status page on HTTPS; `restart()` keeps the state dir."""

    def __init__(self, tmp_path: Path, broker) -> None:
        site = Site(tmp_path / "site", devices=1)
        tls = tmp_path / "tls"
        tls.mkdir()
        create_ca(tls, "HN-01")
        create_server_cert(tls, tls, ["127.0.0.1"], name="web")
        users = {"version": 1, "users": {OPERATOR: {"hash": PasswordHasher().hash(PASSWORD)}}}
        (tmp_path / "operators.json").write_text(json.dumps(users))
        (tmp_path / "web.secret").write_text(os.urandom(32).hex())
        self.port = free_port()
        web = {
            "enabled": True,
            "port": self.port,
            "certfile": str(tls / "web.crt"),
            "keyfile": str(tls / "web.key"),
            "users_file": str(tmp_path / "operators.json"),
            "session_secret_file": str(tmp_path / "web.secret"),
        }
        self.config = site.write_config(site.config(broker, web=web))
        self.log = tmp_path / "gateway.log"
        self.ca = ssl.create_default_context(cafile=tls / "ca.crt")
        self.process = None

    def start(self) -> "Gateway":
        self.process = start_gateway_process(self.config, self.log)

        def ready() -> bool:
            try:
                return httpx.get(self.url("/healthz"), verify=self.ca, timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, message="the gateway's status page")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address, verify=self.ca)
        return httpx.Client(base_url=self.url(""), transport=transport, timeout=60)

    def peak_rss(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)
        return int(kib) * 1024


@pytest.fixture
def gateway(tmp_path: Path, mosquitto):
    gateway = Gateway(tmp_path, mosquitto(users=USERS, acl=ACL)).start()
    yield gateway
    gateway.stop()


def login(client: httpx.Client, password: str) -> httpx.Response:
    token = CSRF_RE.search(client.get("/login").text).group(1)
    return client.post("/login", data={"user": OPERATOR, "password": password, "csrf": token})


def test_40_concurrent_logins_stay_within_the_units_memory(gateway: Gateway) -> None:
    clients = [gateway.client(f"127.0.0.{10 + i}") for i in range(40)]
    tokens = [CSRF_RE.search(c.get("/login").text).group(1) for c in clients]
    start = threading.Barrier(len(clients))
    answers: list[httpx.Response] = []

    def post(client: httpx.Client, token: str) -> None:
        start.wait()
        data = {"user": OPERATOR, "password": "x", "csrf": token}
        answers.append(client.post("/login", data=data))

    threads = [
        threading.Thread(target=post, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for client in clients:
        client.close()
    counted = Counter(a.status_code for a in answers)
    assert sum(counted.values()) == 40 and set(counted) <= {401, 503}, counted
    assert all(int(a.headers["Retry-After"]) > 0 for a in answers if a.status_code == 503)
    assert counted[401] >= 2  # checks did run, a few at a time
    peak = gateway.peak_rss()
    assert peak < MEMORY_MAX, f"VmHWM {peak / 2**20:.0f} MiB"
    print(f"gateway VmHWM after 40 concurrent logins: {peak / 2**20:.0f} MiB")


def test_limits_and_logouts_survive_a_restart(gateway: Gateway) -> None:
    with gateway.client("127.0.0.1") as attacker:
        assert [login(attacker, f"guess{i}").status_code for i in range(5)] == [401] * 5
        assert login(attacker, PASSWORD).status_code == 429
    with gateway.client("127.0.0.2") as desk:
        assert login(desk, PASSWORD).status_code == 303
        kept = desk.cookies["chot_session"]
    with gateway.client("127.0.0.3") as leaving:
        assert login(leaving, PASSWORD).status_code == 303
        csrf = CSRF_RE.search(leaving.get("/").text).group(1)
        logged_out = leaving.cookies["chot_session"]
        assert leaving.post("/logout", data={"csrf": csrf}).status_code == 303

    gateway.restart()

    with gateway.client("127.0.0.1") as attacker:  # still locked: the limit is in the store
        assert login(attacker, PASSWORD).status_code == 429
    with gateway.client("127.0.0.2") as desk:  # a live session outlives the restart ...
        desk.cookies.set("chot_session", kept)
        assert desk.get("/api/status").status_code == 200
    with gateway.client("127.0.0.3") as leaving:  # ... a logged-out one stays refused
        leaving.cookies.set("chot_session", logged_out)
        assert leaving.get("/api/status").status_code == 401

    # the documented way out, while the gateway runs: `chot gateway unlock-login`
    unlock = [sys.executable, "-m", "gateway.cli", "gateway", "unlock-login"]
    argv = [*unlock, "--config", str(gateway.config), "--address", "127.0.0.1"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "cleared 5 failed login(s)" in done.stdout, done.stderr
    with gateway.client("127.0.0.1") as attacker:
        assert login(attacker, PASSWORD).status_code == 303
