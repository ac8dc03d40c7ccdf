"""What the web layer needs from the running gateway, in one small object.

The web layer never builds gateway parts itself: gateway/app.py (or a test) passes the store,
the config and two callables, so the page shows exactly what the running gateway does.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.store import Store

# (category, doc4 or None, operator, lane or None, *, outcome=, refusal=) -> event id hex of the
# signed manual event (gateway.manual.GatewaySigner.record_manual)
RecordManualEntry = Callable[..., str]


@dataclass
class WebContext:
    store: Store
    config: GatewayConfig
    record_manual_entry: RecordManualEntry
    health: Callable[[], dict[str, Any]]
    now: Callable[[], float] = field(default=time.time)  # unix seconds; tests may fix it

    def now_ms(self) -> int:
        return int(self.now() * 1000)
