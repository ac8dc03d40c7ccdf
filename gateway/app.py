"""GatewayApp: wires config -> store -> ingest (MQTT) -> forwarder -> distribution -> signer.

Lifecycle: `start()` opens the store, connects to the broker (persistent MQTT 5 session,
fixed client id, retained status with last will "offline": gateway/mqtt_session.py), starts the ingest writer and the
forwarder; `run()` does the periodic work (store maintenance, load summaries, document folder,
registry reload and what follows it: gateway/registry_follower.py, systemd watchdog) until SIGTERM or the duration; `stop()` drains the ingest
queue, publishes "stopped" and closes everything.

The web layer (gateway/web/) reads `app.store` and `app.health()`; `web_app()` is its hook.
"""

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from common.keys import load_key_file
from common.sd_notify import SystemdNotifier
from gateway.acks import AckSigner
from gateway.broker_admin import BrokerAdmin
from gateway.config import GatewayConfig, read_secret
from gateway.distribution import Distributor
from gateway.fetcher import DocumentFetcher, SiteRegistryFile
from gateway.forwarder import Forwarder
from gateway.health import gateway_health
from gateway.ingest import Ingest
from gateway.manual import GatewaySigner
from gateway.mqtt_session import MAX_PACKET_BYTES, MqttSession
from gateway.recent_passes import RecentPassesPublisher
from gateway.registry_follower import LANE_CAPACITY, RegistryFollower
from gateway.registry_source import RegistrySource
from gateway.store import Store
from protocol import topics
from protocol.registry import Registry
from protocol.trust import root_keyring

log = logging.getLogger(__name__)

__all__ = ["LANE_CAPACITY", "MAX_PACKET_BYTES", "GatewayApp", "load_signing_key"]


def load_signing_key(path: Path) -> SigningKey:
    """The gateway's Ed25519 seed file (64 hex), as provisioning writes it (mode 0600; a
    file others can read is only warned about until every gateway test fixture writes 0600)."""
    return load_key_file(Path(path), strict_mode=False)


class GatewayApp:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.connected = threading.Event()
        # set once the broker granted our subscriptions: only then is an event published
        # by a scanner sure to reach us (a fresh session holds nothing before that)
        self.ready = threading.Event()
        self.started_at = time.time()
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.recent_passes: RecentPassesPublisher | None = None
        self.forwarder: Forwarder | None = None
        self.fetcher: DocumentFetcher | None = None
        self.site_registry: SiteRegistryFile | None = None
        self.registry_follower: RegistryFollower | None = None
        self.broker_admin: BrokerAdmin | None = None
        self.distributor: Distributor | None = None
        self.signer: GatewaySigner | None = None
        self.session: MqttSession | None = None
        self.client: mqtt.Client | None = None  # the session's, once init_mqtt ran
        self.registry: RegistrySource | None = None
        self.web_server: Any = None
        self.notifier = SystemdNotifier()

    # --- wiring ----------------------------------------------------------------------------

    def init_store(self) -> None:
        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(
            c.store_path,
            max_bytes=c.store.max_bytes,
            disk_alert_free_bytes=c.store.disk_alert_free_bytes,
            retention_days=c.store.retention_days,
            own_id=c.id,
            gap_expiry_hours=c.store.gap_expiry_hours,
        )

    def init_ingest(self) -> None:
        c = self.config
        self.site_registry = SiteRegistryFile(
            c.state_dir, c.registry_file, c.site, root_keyring(c.root_keys)
        )
        # a signed registry fetched from the central wins over the bundle's file
        held = self.site_registry.signed_path.exists()
        self.registry = RegistrySource(self.site_registry.path if held else c.registry_file, c.site)
        self.registry_follower = RegistryFollower(
            self.registry, self.site_registry, c.lanes, self.connected
        )
        self.ingest = Ingest(
            self.store,
            c.site,
            self.registry,
            batch_max=c.store.batch_max,
            batch_ms=c.store.batch_ms,
            peer_acks=bool(c.mqtt.shared_group),
            verify_process=c.verify_process,
            queue_max=c.store.queue_max,
        )
        self.ingest.registry_check_s = c.registry_check_s
        # acks signed with the gateway key, bound to each unit's outbox epoch (issue #13)
        self.ingest.acks = AckSigner(c.id, c.site, load_signing_key(c.signing_key_file))
        # accepted passes shared with every unit of the site: one pass, one entry (issue #15);
        # the window is the bundles' site policy (duplicate_window_s), each unit applies its own
        self.recent_passes = RecentPassesPublisher(
            c.id,
            c.site,
            load_signing_key(c.signing_key_file),
            self._publish_retained,
            topics.recent_topic(c.site),
            window_s=c.policy.duplicate_window_s,
        )
        # what was accepted before a restart is still recent: a brand-new unit gets it too
        self.recent_passes.rebuild(self.store.accepted_passes_since(self.recent_passes.since_ms()))
        self.ingest.recent = self.recent_passes

    def init_forwarder(self) -> None:
        c = self.config.central
        if not c.url:
            log.warning("no central url: events are kept in the store, not forwarded")
            return
        token = read_secret(c.token_file) or ""
        self.forwarder = Forwarder(
            self.store,
            self.config.id,
            c.url,
            token,
            batch_size=c.batch_size,
            connect_timeout_s=c.connect_timeout_s,
            read_timeout_s=c.read_timeout_s,
            backoff_initial_s=c.backoff_initial_s,
            backoff_max_s=c.backoff_max_s,
            idle_poll_s=c.idle_poll_s,
            verify=str(c.ca_file) if c.ca_file else True,
        )
        self.ingest.on_batch = lambda result: self.forwarder.wake() if result.stored else None

    def init_signer_and_distribution(self) -> None:
        c = self.config
        self.signer = GatewaySigner(self.store, load_signing_key(c.signing_key_file), c.id, c.site)
        self.distributor = Distributor(
            self.store, c.site, c.root_keys, self._publish_retained, c.documents_dir
        )

    def init_fetcher(self) -> None:
        """Newer signed documents from the central (gateway/fetcher.py)."""
        c = self.config.central
        if not c.url:
            return
        self.fetcher = DocumentFetcher(
            c.url,
            self.config.id,
            read_secret(c.token_file) or "",
            self.distributor,
            self.site_registry,
            on_registry=self._registry_adopted,
            status_dir=self.config.state_dir,
            poll_s=c.documents_poll_s,
            backoff_initial_s=c.backoff_initial_s,
            backoff_max_s=c.backoff_max_s,
            connect_timeout_s=c.connect_timeout_s,
            read_timeout_s=c.read_timeout_s,
            verify=str(c.ca_file) if c.ca_file else True,
        )

    def _registry_adopted(self, registry: Registry) -> None:
        """A newer signed registry is on disk: ingest reads that file from now on."""
        self.registry_follower.adopt(registry)

    def follow_registry(self) -> None:
        """Keep what depends on the site registry in step with the one ingest uses: the
        lanes (status page, load summaries) follow its active units, and units get their
        broker logins (gateway/registry_follower.py)."""
        if self.registry_follower is not None:
            self.registry_follower.follow()

    def init_mqtt(self) -> None:
        self.session = MqttSession(
            self.config,
            self.ingest,
            self._on_connected,
            stopping=self.stopping,
            connected=self.connected,
            ready=self.ready,
        )
        self.client = self.session.client

    def _on_connected(self) -> int:
        """Every (re)connect: the retained documents and recent passes again, every unit's
        broker login again; returns how many documents were republished."""
        n = self.distributor.republish_all()
        if self.recent_passes is not None and len(self.recent_passes):
            self.recent_passes.publish_now()  # the set rebuilt from the store at start
        self.registry_follower.reconnected()
        return n

    def _publish_retained(self, topic: str, raw: bytes) -> None:
        if self.session is not None:
            self.session.publish_retained(topic, raw)

    def _publish_control(self, topic: str, payload: bytes) -> None:
        if self.session is not None:
            self.session.publish_control(topic, payload)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> "GatewayApp":
        self.init_store()
        self.init_ingest()
        self.init_forwarder()
        self.init_signer_and_distribution()
        self.init_fetcher()
        self.init_mqtt()
        if self.config.broker.dynsec:
            key = bytes.fromhex(read_secret(self.config.broker.unit_key_file) or "")
            self.broker_admin = BrokerAdmin(self.config.site, key, self._publish_control)
            self.registry_follower.broker_admin = self.broker_admin
        self.distributor.scan_folder()
        self.ingest.start()
        if self.forwarder:
            self.forwarder.start()
        if self.fetcher:
            self.fetcher.start()
        self.session.start()
        self.start_web()
        self.store.add_audit("gateway", "start", f"client_id={self.config.client_id}")
        log.info("gateway %s for site %s started", self.config.id, self.config.site)
        return self

    def run(self, duration: float | None = None) -> None:
        """Periodic work until SIGTERM/SIGINT or `duration` seconds."""
        self._install_signals()
        self.notifier.ready()
        watchdog_s = self.notifier.watchdog_s or 0.0
        deadline = time.monotonic() + duration if duration else None
        next_maintain = time.monotonic()
        next_load = time.monotonic() + self.config.load_interval_s
        next_docs = time.monotonic() + 5
        while not self.stopping.is_set():
            now = time.monotonic()
            if deadline and now >= deadline:
                break
            try:
                if now >= next_maintain:
                    self.store.maintain()
                    next_maintain = now + self.config.store.maintain_interval_s
                if self.config.lanes and now >= next_load:
                    self.signer.record_load(self.config.lanes, int(self.config.load_interval_s))
                    next_load = now + self.config.load_interval_s
                if now >= next_docs:
                    self.distributor.scan_folder()
                    next_docs = now + 5
                # every tick (cheap when unchanged): units get their broker logins within a
                # second of a new registry or of a (re)connect
                self.follow_registry()
            except Exception:
                log.exception("periodic task failed")
            self.notifier.watchdog()
            self.stopping.wait(min(1.0, watchdog_s / 2 or 1.0))
        self.stop()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload())

    def reload(self) -> None:
        """SIGHUP: reload the registry (in the writer thread) and rescan documents soon."""
        if self.registry:
            self.registry.request_reload()
        if self.distributor:
            self.distributor._seen.clear()

    def stop(self) -> None:
        """Clean exit: drain and commit what is queued, say "stopped", close."""
        self.stopping.set()
        self.notifier.stopping()
        if self.web_server is not None:
            self.web_server.stop()
        if self.ingest:
            self.ingest.stop()
        if self.recent_passes:
            self.recent_passes.stop()
        if self.forwarder:
            self.forwarder.stop()
        if self.fetcher:
            self.fetcher.stop()
        if self.session:
            self.session.stop()
        if self.store:
            self.store.add_audit("gateway", "stop")
            self.store.close()
        log.info("gateway %s stopped", self.config.id)

    # --- numbers for the web layer ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Ingest rate, store depth, forward lag, rejects by reason and alerts."""
        return gateway_health(
            self.config,
            self.store,
            started_at=self.started_at,
            mqtt_connected=self.connected.is_set(),
            ingest=self.ingest,
            forwarder=self.forwarder,
            fetcher=self.fetcher,
            recent_passes=self.recent_passes,
        )

    def record_manual_entry(
        self,
        category: str,
        doc4: str | None,
        operator: str,
        lane: str | None,
        *,
        outcome: str = "admitted",
        refusal: str | None = None,
    ) -> str:
        """A hand-checked person from the status page, admitted or turned away: signed,
        stored, forwarded."""
        event = self.signer.record_manual(
            category, operator, lane=lane, doc4=doc4, outcome=outcome, refusal=refusal
        )
        if self.forwarder:
            self.forwarder.wake()
        return event.eid_hex

    def web_app(self) -> Any:
        """The operators' status page (gateway/web/) over this gateway's own store."""
        from gateway.web.app import create_app
        from gateway.web.context import WebContext

        context = WebContext(
            store=self.store,
            config=self.config,
            record_manual_entry=self.record_manual_entry,
            health=self.health,
        )
        return create_app(context)

    def start_web(self) -> None:
        """Serve the status page in a thread when `[web] enabled = true`."""
        if not self.config.web.enabled:
            return
        from gateway.web.server import serve

        self.web_server = serve(self.web_app(), self.config.web)
        scheme = "https" if self.config.web.tls else "http"
        log.info("status page on %s://%s:%d/", scheme, self.config.web.host, self.config.web.port)
