"""Login limits on a real HTTPS server (issue #13, item 4), in-process so the password checks
can be counted: `app.state.web.users.checks` is the number of argon2 verifications run.

Source addresses: 127.0.0.0/8 is all loopback, so a client bound to 127.0.0.2 is "another
machine" for the gateway (httpx `local_address`).
"""

import re
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.web import create_app, serve
from harness.mosquitto import free_port
from provisioning.tls import create_ca, create_server_cert
from tests.support.gateway_web import OPERATOR, PASSWORD, WebSite, build_site

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
ATTACKER, OPERATOR_DESK = "127.0.0.1", "127.0.0.2"


@dataclass
class Page:
    site: WebSite
    port: int
    ca: Path

    @property
    def checks(self) -> int:
        return self.app.state.web.users.checks

    def client(self, address: str) -> httpx.Client:
        verify = ssl.create_default_context(cafile=self.ca)
        transport = httpx.HTTPTransport(local_address=address, verify=verify)
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.port}", transport=transport, timeout=30
        )


def tls_files(folder: Path) -> dict[str, str]:
    folder.mkdir()
    create_ca(folder, "HN-01")
    create_server_cert(folder, folder, ["127.0.0.1", "localhost"], name="web")
    return {"certfile": str(folder / "web.crt"), "keyfile": str(folder / "web.key")}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    port = free_port()
    web = {"tls": True, "port": port, **tls_files(tmp_path / "tls")}
    site = build_site(tmp_path / "site", web=web)
    app = create_app(site.ctx)
    server = serve(app, site.config.web)
    page = Page(site, port, tmp_path / "tls" / "ca.crt")
    page.app = app
    yield page
    server.stop()
    site.store.close()


def login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    token = CSRF_RE.search(client.get("/login").text).group(1)
    return client.post("/login", data={"user": user, "password": password, "csrf": token})


def burst(page: Page, address: str, n: int, user: str = OPERATOR) -> list[httpx.Response]:
    """n wrong logins from `address` at once: every client has its form first, then all
    POST together."""
    clients = [page.client(address) for _ in range(n)]
    tokens = [CSRF_RE.search(c.get("/login").text).group(1) for c in clients]
    start = threading.Barrier(n)
    answers: list[httpx.Response] = [None] * n  # type: ignore[list-item]

    def post(i: int) -> None:
        start.wait()
        answers[i] = clients[i].post(
            "/login", data={"user": user, "password": f"guess-{i}", "csrf": tokens[i]}
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.close()
    return answers


def test_a_burst_of_60_gets_5_password_checks(page: Page) -> None:
    answers = burst(page, ATTACKER, 60)
    codes = Counter(a.status_code for a in answers)
    assert codes == {401: 5, 429: 55}
    assert page.checks == 5  # the 55 others never reached argon2
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status_code == 429)
    with page.client(ATTACKER) as client:  # the right password does not help now
        assert login(client, OPERATOR, PASSWORD).status_code == 429
    assert page.checks == 5


def test_the_operator_logs_in_from_another_address(page: Page) -> None:
    burst(page, ATTACKER, 20)
    with page.client(ATTACKER) as attacker:
        assert login(attacker, OPERATOR, PASSWORD).status_code == 429
    with page.client(OPERATOR_DESK) as desk:
        answer = login(desk, OPERATOR, PASSWORD)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert desk.get("/api/status").status_code == 200
    actions = Counter(row["action"] for row in page.site.store.audit_log())
    assert actions["login_failed"] == 5 and actions["login"] == 1
    assert actions["login_rate_limited"] == 16


def test_spraying_many_accounts_locks_the_address(page: Page) -> None:
    """The per-address limit (10 a minute) also holds when every guess names another user."""
    with page.client("127.0.0.3") as client:
        codes = [login(client, f"user{i}", "guess").status_code for i in range(14)]
    assert codes == [401] * 10 + [429] * 4
    assert page.checks == 10
