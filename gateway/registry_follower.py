"""What depends on the site registry follows the one ingest uses.

The lanes (status page, load summaries) follow the registry's active units, and with a
dynamic-security broker every unit gets its broker login (gateway/broker_admin.py) within a
second of a new registry or of a (re)connect. A newer signed registry from the central
(gateway/fetcher.py) is adopted here too: ingest reads that file from then on.
"""

import logging
import threading

from gateway.broker_admin import BrokerAdmin
from gateway.fetcher import SiteRegistryFile
from gateway.registry_source import RegistrySource
from protocol.registry import Registry

log = logging.getLogger(__name__)

LANE_CAPACITY = 12  # people per minute, for a lane the registry adds (provisioning's default)


class RegistryFollower:
    """Called every tick of the app's run loop (cheap when nothing changed)."""

    def __init__(
        self,
        source: RegistrySource,
        site_registry: SiteRegistryFile,
        lanes: dict[str, int],
        connected: threading.Event,
    ) -> None:
        self.source = source
        self.site_registry = site_registry
        self.lanes = lanes  # the config's dict, in place: the web layer holds this very dict
        self.connected = connected
        self.broker_admin: BrokerAdmin | None = None
        self._followed: Registry | None = None
        self._broker_resync = True  # after (re)connecting, send every unit again

    def reconnected(self) -> None:
        """A new broker connection: send every unit's login again at the next tick."""
        self._broker_resync, self._followed = True, None

    def adopt(self, registry: Registry) -> None:
        """A newer signed registry is on disk: ingest reads that file from now on."""
        self.source.switch_to(self.site_registry.path)  # the first one leaves the bundle's file

    def follow(self) -> None:
        registry = self.source.registry
        if registry is self._followed or not registry.signers:
            return
        self._followed = registry
        self._follow_lanes(registry)
        if self.broker_admin and self.connected.is_set():
            self.broker_admin.apply(registry, full=self._broker_resync)
            self._broker_resync = False
        elif self.broker_admin:
            self._followed = None  # not connected: try again next tick

    def _follow_lanes(self, registry: Registry) -> None:
        lanes = {s.lane for s in registry if s.role == "device" and s.lane and not s.revoked}
        current = self.lanes
        default = max(current.values(), default=LANE_CAPACITY)
        wanted = {lane: current.get(lane, default) for lane in sorted(lanes)}
        if wanted != current:
            log.info("lanes follow the registry: %s", ", ".join(wanted) or "none")
            current.clear()  # in place: the web layer holds this very dict
            current.update(wanted)
