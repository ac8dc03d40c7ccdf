"""The live decision feed as Server-Sent Events.

The store's event row id only ever grows, so it is the SSE `id:`; a browser that reconnects
sends `Last-Event-ID` and resumes exactly after the last line it showed. The server polls
the store (every `poll_s`) instead of being pushed to: ingest stays unaware of the web layer.

Bounded: at most `max_clients` open feeds and a quarter of them per login session (more from
one session is refused with 429 before the stream starts), `batch` rows per poll, and each connection ends
after `max_s` (EventSource reconnects by itself with Last-Event-ID), so a forgotten tablet
cannot hold a worker forever.
"""

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import anyio.to_thread

from gateway.store import Store
from gateway.web.status import decision_dict

log = logging.getLogger(__name__)

FEED_TYPES = ("scan", "manual")  # load summaries are bookkeeping, not decisions
INITIAL_ROWS = 30


class FeedLimiter:
    """Open feeds, in all and per login session: one session (a stolen cookie, a script, a
    tablet reopening tabs) may hold at most `per_session` of the `max_clients` slots, so it
    cannot lock the other operators out of the live feed."""

    def __init__(self, max_clients: int, per_session: int | None = None) -> None:
        self.max_clients = max_clients
        self.per_session = per_session or max(1, max_clients // 4)
        self.open = 0
        self._by_session: Counter[str] = Counter()
        self._lock = threading.Lock()

    def session_full(self, session: str) -> bool:
        with self._lock:
            return self._by_session[session] >= self.per_session

    def enter(self, session: str = "") -> bool:
        with self._lock:
            if self.open >= self.max_clients or self._by_session[session] >= self.per_session:
                return False
            self.open += 1
            self._by_session[session] += 1
            return True

    def leave(self, session: str = "") -> None:
        with self._lock:
            self.open -= 1
            self._by_session[session] -= 1
            if self._by_session[session] <= 0:
                del self._by_session[session]


def parse_last_id(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def format_event(row_id: int, data: dict) -> str:
    return f"id: {row_id}\nevent: decision\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def feed(
    store: Store,
    after_id: int,
    is_disconnected: Callable,
    limiter: FeedLimiter,
    *,
    poll_s: float = 0.5,
    max_s: float = 300.0,
    batch: int = 200,
    keepalive_s: float = 15.0,
    session: str = "",
) -> AsyncIterator[str]:
    """Yield SSE frames: decisions after `after_id` (or the newest few when 0), then new ones
    as they are committed, until the client leaves or `max_s` passes. Entering and leaving
    the limiter both happen in here, so a client gone before the first byte leaks nothing."""
    if not limiter.enter(session):
        log.warning("feed refused: all %d feeds or this session's share open", limiter.open)
        yield "retry: 30000\nevent: busy\ndata: {}\n\n"  # EventSource tries again later
        return
    try:
        yield "retry: 2000\n\n"
        deadline = time.monotonic() + max_s
        last_sent = time.monotonic()
        cursor = after_id
        first = True
        while time.monotonic() < deadline:
            limit = INITIAL_ROWS if first and not cursor else batch
            rows = await anyio.to_thread.run_sync(store.recent_decisions, cursor, limit)
            first = False
            for row in rows:
                cursor = row.id
                if row.typ in FEED_TYPES:
                    yield format_event(row.id, decision_dict(row))
                    last_sent = time.monotonic()
            if len(rows) == limit and limit == batch:
                continue  # backlog: catch up before sleeping
            if time.monotonic() - last_sent > keepalive_s:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            if await is_disconnected():
                break
            await asyncio.sleep(poll_s)
    finally:
        limiter.leave(session)
