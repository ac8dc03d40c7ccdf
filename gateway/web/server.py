"""Run the status page with uvicorn in a background thread: HTTPS unless `[web] tls = false`.

Plain HTTP is for a TLS-terminating reverse proxy on the same machine only; the operators'
passwords and session cookies must not cross the venue LAN in clear."""

import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from gateway.config import WebConfig

log = logging.getLogger(__name__)


class ThreadedServer(uvicorn.Server):
    """uvicorn.Server that runs in its own thread (uvicorn leaves signal handling to the
    main thread then, which the gateway owns); `stop()` ends it and waits."""

    thread: threading.Thread | None = None

    def stop(self, timeout: float = 10.0) -> None:
        self.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)


def serve(
    app: FastAPI, web_config: WebConfig, *, startup_timeout_s: float = 10.0
) -> ThreadedServer:
    """Start serving `app` on web_config.host:port and return once it listens."""
    tls = web_config.tls
    if tls and not (web_config.certfile and web_config.keyfile):
        raise ValueError("web.tls needs certfile and keyfile (or tls = false, explicitly)")
    config = uvicorn.Config(
        app,
        host=web_config.host,
        port=web_config.port,
        log_level="warning",
        ssl_certfile=str(web_config.certfile) if tls else None,
        ssl_keyfile=str(web_config.keyfile) if tls else None,
        timeout_graceful_shutdown=3,
        access_log=False,
        lifespan="off",
    )
    server = ThreadedServer(config)
    server.thread = threading.Thread(target=server.run, name="chot-web", daemon=True)
    server.thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not server.thread.is_alive() or time.monotonic() > deadline:
            server.stop(1)
            raise RuntimeError(f"status page did not start on {web_config.host}:{web_config.port}")
        time.sleep(0.02)
    scheme = "https" if tls else "http"
    log.info("status page on %s://%s:%d/", scheme, web_config.host, web_config.port)
    return server
