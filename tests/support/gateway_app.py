"""A real gateway in the test's own process (GatewayApp: MQTT ingest, store, web app) with an
operator who can log in to its status page, for tests that look at what operators see.

`running_gateway` starts it from a `Site`'s config, hangs `site` and `config_path` on the app
(the tests read both) and stops it when the `with` block ends."""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from gateway.app import GatewayApp
from gateway.config import GatewayConfig, parse_config
from tests.support.gateway_core import Site
from tests.support.gateway_web import OPERATOR, PASSWORD, write_operator_login

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def running_gateway(
    site: Site,
    broker: Any,
    *,
    session_secret: str = "ab" * 32,
    before_start: Callable[[GatewayConfig], None] | None = None,
    **config: Any,
) -> Iterator[GatewayApp]:
    """The site's gateway `gw-a` on `broker`, started and ready (its MQTT session up), with the
    operator login written next to the site; `config` goes to `Site.config` (central_url,
    sections to override); `before_start` may prepare the state (a store trigger, say)."""
    web = write_operator_login(site.dir, session_secret)
    data = site.config(broker, **config)
    data.setdefault("web", {}).update(web)
    config_path = site.write_config(data)
    parsed = parse_config(data)
    if before_start is not None:
        before_start(parsed)
    app = GatewayApp(parsed).start()
    try:
        assert app.ready.wait(15)
        app.site = site  # type: ignore[attr-defined]
        app.config_path = config_path  # type: ignore[attr-defined]
        yield app
    finally:
        app.stop()


@dataclass(frozen=True)
class BrokerAddress:
    """Where a broker listens, in the shape `Scanner` and `TopicReader` take a broker."""

    host: str
    port: int


def broker_of(app: GatewayApp) -> BrokerAddress:
    """The broker the app is connected to."""
    return BrokerAddress(app.config.mqtt.host, app.config.mqtt.port)


def logged_in(app: GatewayApp) -> TestClient:
    """A client of the app's status page, logged in as the operator (over "https" so the
    secure session cookie is kept)."""
    client = TestClient(app.web_app(), base_url="https://testserver")
    token = CSRF_RE.search(client.get("/login").text).group(1)
    response = client.post(
        "/login",
        data={"user": OPERATOR, "password": PASSWORD, "csrf": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    return client
