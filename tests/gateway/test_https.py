"""The status page speaks HTTPS by default (issue #13, item 8).

A gateway bundle from `chot provision gateway add` carries web.crt/web.key from the site CA;
the gateway serves its page with them: the certificate verifies against the site CA for the
host names given and localhost, the session cookie is `Secure`, HSTS is sent, and plain HTTP
gets nothing. Plain HTTP only when `[web] tls = false` is written out.
"""

import re
import ssl
import stat
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.store import Store
from gateway.web import WebContext, create_app, serve
from harness.mosquitto import free_port
from provisioning.errors import OpsError
from provisioning.home import OpsHome
from provisioning.tls import create_ca, create_server_cert

SITE = "HN-01"
OPERATOR, PASSWORD = "alice", "correct horse battery"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def home(tmp_path: Path) -> OpsHome:
    home = OpsHome.init(tmp_path / "ops", now=int(time.time()) - 3600)
    home.add_operator(SITE, OPERATOR, PASSWORD)
    return home


def enable_web(config_path: Path, port: int, **web: object) -> GatewayConfig:
    """The bundle's config with the page switched on, as the operator would edit it."""
    data = tomllib.loads(config_path.read_text())
    data["web"].update({"enabled": True, "port": port, **web})
    base = config_path.parent
    for key in ("state_dir", "signing_key_file", "registry_file", "documents_dir"):
        data[key] = str(base / data[key])
    for key in ("certfile", "keyfile", "users_file", "session_secret_file"):
        if data["web"].get(key):
            data["web"][key] = str(base / data["web"][key])
    data["mqtt"]["password_file"] = str(base / data["mqtt"]["password_file"])
    data["mqtt"]["ca_file"] = str(base / data["mqtt"]["ca_file"])
    data["central"]["token_file"] = str(base / data["central"]["token_file"])
    return parse_config(data)


def start_page(config: GatewayConfig):
    store = Store(config.store_path, own_id=config.id)
    ctx = WebContext(
        store=store,
        config=config,
        record_manual_entry=lambda *a: "",
        health=lambda: {"alerts": []},
    )
    return serve(create_app(ctx), config.web), store


def login(client: httpx.Client) -> httpx.Response:
    token = CSRF_RE.search(client.get("/login").text).group(1)
    return client.post("/login", data={"user": OPERATOR, "password": PASSWORD, "csrf": token})


def test_provisioned_gateway_serves_https_signed_by_the_site_ca(
    home: OpsHome, tmp_path: Path
) -> None:
    bundle = home.add_gateway(SITE, "gw-a", out=tmp_path / "gw", web_hosts=["gw.venue.lan"])
    folder = bundle.folder
    assert stat.S_IMODE((folder / "web.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((folder / "web.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"gw.venue.lan", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert load_config(folder / "gateway.toml").web.tls is True

    port = free_port()
    config = enable_web(folder / "gateway.toml", port)
    server, store = start_page(config)
    ca = ssl.create_default_context(cafile=folder / "ca.crt")  # the site CA from the bundle
    try:
        with httpx.Client(base_url=f"https://localhost:{port}", verify=ca) as client:
            response = login(client)
            assert response.status_code == 303
            cookie = response.headers["set-cookie"]
            assert "chot_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            assert client.get("/api/status").status_code == 200
        # a certificate from another CA is not trusted: the site CA is what pins the page
        other = tmp_path / "other-ca"
        other.mkdir()
        create_ca(other, "ELSEWHERE")
        foreign = ssl.create_default_context(cafile=other / "ca.crt")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://localhost:{port}/healthz", verify=foreign)
        # plain HTTP on the page's port gets no page
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
    finally:
        server.stop()
        store.close()


def test_plain_http_only_when_written_out(home: OpsHome, tmp_path: Path) -> None:
    bundle = home.add_gateway(SITE, "gw-a", out=tmp_path / "gw")
    path = bundle.folder / "gateway.toml"
    with pytest.raises(ConfigError, match="tls"):  # TLS on, no certificate: refused
        enable_web(path, free_port(), certfile=None, keyfile=None)
    port = free_port()
    config = enable_web(path, port, tls=False, certfile=None, keyfile=None)
    server, store = start_page(config)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            response = login(client)
            assert response.status_code == 303
            assert "Secure" not in response.headers["set-cookie"]
            assert "Strict-Transport-Security" not in response.headers
    finally:
        server.stop()
        store.close()


def test_operators_own_certificate(home: OpsHome, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    create_ca(own, "VENUE")
    create_server_cert(own, own, ["status.venue.example"], name="web")
    bundle = home.add_gateway(
        SITE, "gw-a", out=tmp_path / "gw", web_cert=own / "web.crt", web_key=own / "web.key"
    )
    assert (bundle.folder / "web.crt").read_bytes() == (own / "web.crt").read_bytes()
    assert stat.S_IMODE((bundle.folder / "web.key").stat().st_mode) == 0o600
    create_server_cert(own, own, ["other"], name="stray")  # a key that is not web.crt's
    with pytest.raises(OpsError, match="not the key"):
        home.add_gateway(
            SITE, "gw-b", out=tmp_path / "gw-b", web_cert=own / "web.crt", web_key=own / "stray.key"
        )
    assert "gw-b" not in home.registry().signers and not (tmp_path / "gw-b").exists()
