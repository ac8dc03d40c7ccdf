"""The gate operators' live status page for the site gateway.

Follow a request: `app.py` (create_app: wiring, login guard) -> `pages.py` (HTML: status,
manual entry, audit, login) and `api.py` (read-only JSON, `/api/feed` via `sse.py`) ->
`status.py` (what the store's numbers mean for an operator: alerts, lanes, counters) ->
gateway.store. `auth.py` holds logins, signed session cookies, CSRF and rate limiting;
`metrics.py` the Prometheus text; `server.py` runs uvicorn in a thread. See README.md.
"""

from gateway.web.app import create_app
from gateway.web.context import WebContext
from gateway.web.server import serve

__all__ = ["WebContext", "create_app", "serve"]
