"""One login session cannot hold every live-feed slot (issue #13, item 11): past its share it
gets 429 at once, while another operator's session still gets a feed."""

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.web import create_app
from gateway.web.sse import FeedLimiter
from tests.gateway.test_web_api import logged_in
from tests.support.gateway_web import WebSite, build_site


@pytest.fixture
def site(tmp_path: Path) -> WebSite:
    site = build_site(tmp_path / "site")
    yield site
    site.store.close()


def test_a_session_past_its_share_gets_429_and_another_session_a_feed(site: WebSite) -> None:
    app = create_app(site.ctx, feed_poll_s=0.05, feed_max_s=1.5, max_feeds=4)  # 1 per session
    greedy, other = TestClient(app), TestClient(app)
    for c in (greedy, other):
        logged_in(c)
    site.scan("d01", 1)
    frames: list[str] = []
    holder = threading.Thread(target=lambda: frames.append(greedy.get("/api/feed").text))
    holder.start()
    time.sleep(0.5)  # the greedy session's first feed is open now
    started = time.monotonic()
    refused = greedy.get("/api/feed")
    assert refused.status_code == 429 and time.monotonic() - started < 1.0
    served = other.get("/api/feed")
    assert served.status_code == 200 and "event: decision" in served.text
    holder.join(5)
    assert "event: decision" in frames[0]
    assert greedy.get("/api/feed").status_code == 200  # its slot came back when it closed


def test_limiter_counts_per_session_and_in_all() -> None:
    limiter = FeedLimiter(max_clients=3, per_session=2)
    assert limiter.enter("a") and limiter.enter("a")
    assert not limiter.enter("a") and limiter.session_full("a")
    assert limiter.enter("b") and not limiter.enter("c")  # all three slots taken
    limiter.leave("a")
    assert not limiter.session_full("a") and limiter.enter("c")
    assert FeedLimiter(20).per_session == 5
