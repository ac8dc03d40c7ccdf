"""How this gateway talks to the central store: one authenticated client, one retry pace.

The forwarder (events up) and the fetcher (documents down) both call the central with the
gateway's bearer token and id, and both back off with full jitter so a site's gateways do
not hammer a recovering central in lockstep.
"""

import random

import httpx


def central_client(
    gateway_id: str,
    token: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    verify: bool | str,
    base_url: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An HTTPS client that names this gateway to the central (`headers` adds to that)."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        headers={
            "Authorization": f"Bearer {token}",
            "X-Chot-Gateway": gateway_id,
            **(headers or {}),
        },
        verify=verify,
    )


def full_jitter_s(failures: int, initial_s: float, max_s: float) -> float:
    """Sleep after `failures` (>= 1) failed attempts: uniform(0, min(cap, base * 2^(n-1)))."""
    return random.uniform(0, min(max_s, initial_s * 2 ** min(failures - 1, 30)))
