"""Forwarder: pending events -> central store over HTTPS, in batches, until confirmed.

An event leaves the `pending` state only on the central store's word: `stored` or `duplicate`
mark it forwarded, `rejected` marks it rejected-by-central with the reason (kept, counted, not
retried). Anything else (network error, 5xx, 401, a reply that does not mention an event) leaves
it pending for the next attempt. Event ids make this idempotent: resending a batch after a lost
reply only produces `duplicate` answers.

Retries use exponential backoff with full jitter (sleep uniform(0, min(cap, base * 2^n))) so a
site's gateways do not hammer a recovering central store in lockstep. Central being down for
days is fine: events wait in the store, which is disk-bounded (see Store.maintain).
"""

import logging
import threading
import time
from dataclasses import dataclass

import cbor2
import httpx

from gateway.central_http import central_client, full_jitter_s
from gateway.store import Store, now_ms

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/events"


class ForwardError(Exception):
    """This attempt failed; the events stay pending."""


@dataclass
class ForwardStats:
    sent: int = 0
    confirmed: int = 0
    rejected: int = 0
    failures: int = 0  # consecutive failed attempts
    last_success_ms: int | None = None
    failing_since_ms: int | None = None  # first failure of the current run (alerts.py)
    last_error: str | None = None


class Forwarder:
    def __init__(
        self,
        store: Store,
        gateway_id: str,
        url: str,
        token: str,
        *,
        batch_size: int = 500,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        idle_poll_s: float = 1.0,
        verify: bool | str = True,
    ) -> None:
        self.store = store
        self.gateway_id = gateway_id
        self.url = url.rstrip("/") + INGEST_PATH
        self.batch_size = batch_size
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.idle_poll_s = idle_poll_s
        self.stats = ForwardStats()
        self._http = central_client(
            gateway_id,
            token,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            verify=verify,
            headers={"Content-Type": "application/cbor"},
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one attempt -----------------------------------------------------------------------

    def forward_once(self) -> int:
        """Send one batch of pending events; returns how many central answered for.
        Raises ForwardError when the attempt failed as a whole."""
        batch = self.store.pending_batch(self.batch_size)
        if not batch:
            return 0
        body = cbor2.dumps({"gateway": self.gateway_id, "events": [e.raw for e in batch]})
        try:
            resp = self._http.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise ForwardError(f"central unreachable: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise ForwardError("central refused our token (401)")
        if resp.status_code != 200:
            raise ForwardError(f"central answered HTTP {resp.status_code}")
        try:
            answer = resp.json()
            confirmed = {bytes.fromhex(h) for h in answer["stored"] + answer["duplicate"]}
            rejected = []
            for item in answer["rejected"]:
                eid = batch[int(item["index"])].eid
                rejected.append((eid, str(item["reason"]), str(item.get("detail") or "")))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ForwardError(f"central reply not understood: {exc}") from None
        in_batch = {e.eid for e in batch}
        done = self.store.mark_forwarded(confirmed & in_batch)
        refused = self.store.mark_rejected(rejected)
        for eid, reason, _ in rejected:
            log.warning("central rejected event eid=%s reason=%s", eid.hex(), reason)
        self.stats.sent += len(batch)
        self.stats.confirmed += done
        self.stats.rejected += refused
        if done + refused == 0:
            raise ForwardError("central confirmed none of the batch")
        return done + refused

    # --- loop ------------------------------------------------------------------------------

    def backoff_s(self, failures: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2^(failures-1)))."""
        return full_jitter_s(failures, self.backoff_initial_s, self.backoff_max_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._http.close()

    def wake(self) -> None:
        """Ingest calls this after a commit so forwarding starts without waiting a poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.forward_once()
            except ForwardError as exc:
                self._failed()
                self.stats.last_error = str(exc)
                delay = self.backoff_s(self.stats.failures)
                log.warning(
                    "forward failed (%d in a row): %s; retry in %.1fs",
                    self.stats.failures,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
                continue
            except Exception:
                self._failed()
                log.exception("forwarder error")
                self._stop.wait(self.backoff_s(self.stats.failures))
                continue
            if n:
                self.stats.failures = 0
                self.stats.failing_since_ms = None
                self.stats.last_success_ms = now_ms()
                self.stats.last_error = None
                continue  # more may be pending: go again at once
            self._wake.wait(self.idle_poll_s)
            self._wake.clear()

    def _failed(self) -> None:
        if not self.stats.failures:
            self.stats.failing_since_ms = now_ms()
        self.stats.failures += 1

    def health(self) -> dict:
        s = self.stats
        return {
            "sent": s.sent,
            "confirmed": s.confirmed,
            "rejected": s.rejected,
            "failures": s.failures,
            "last_success_ms": s.last_success_ms,
            "failing_since_ms": s.failing_since_ms,
            "last_error": s.last_error,
            "lag_s": self.store.forward_lag_s(),
            "checked_at": time.time(),
        }
