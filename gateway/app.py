"""GatewayApp: wires config -> store -> ingest (MQTT) -> forwarder -> distribution -> signer.

Lifecycle: `start()` opens the store, connects to the broker (persistent MQTT 5 session,
fixed client id, retained status with last will "offline"), starts the ingest writer and the
forwarder; `run()` does the periodic work (store maintenance, load summaries, document folder,
registry reload, systemd watchdog) until SIGTERM or the duration; `stop()` drains the ingest
queue, publishes "stopped" and closes everything.

The web layer (gateway/web/) reads `app.store` and `app.health()`; `web_app()` is its hook.
"""

import logging
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.keys import load_key_file
from common.sd_notify import SystemdNotifier
from gateway.acks import AckSigner
from gateway.broker_admin import BrokerAdmin
from gateway.config import GatewayConfig, read_secret
from gateway.distribution import Distributor
from gateway.fetcher import DocumentFetcher, SiteRegistryFile
from gateway.forwarder import Forwarder
from gateway.ingest import Ingest, RegistrySource
from gateway.manual import GatewaySigner
from gateway.recent_passes import RecentPassesPublisher
from gateway.store import Store
from gateway.web.alerts import gateway_alerts
from protocol import topics
from protocol.registry import Registry
from protocol.status import encode_status
from protocol.trust import root_keyring

log = logging.getLogger(__name__)

LANE_CAPACITY = 12  # people per minute, for a lane the registry adds (provisioning's default)
MAX_PACKET_BYTES = 64 * 1024  # an event (4 KiB), its topic and properties, with room to spare


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
        self._subscribe_mid: int | None = None
        self.started_at = time.time()
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.recent_passes: RecentPassesPublisher | None = None
        self.forwarder: Forwarder | None = None
        self.fetcher: DocumentFetcher | None = None
        self.site_registry: SiteRegistryFile | None = None
        self._followed_registry: Registry | None = None
        self.broker_admin: BrokerAdmin | None = None
        self._broker_resync = True  # after (re)connecting, send every unit again
        self.distributor: Distributor | None = None
        self.signer: GatewaySigner | None = None
        self.client: mqtt.Client | None = None
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
        path = self.site_registry.path
        if self.registry._file.path != path:  # first one: leave the bundle's file for it
            self.registry._file.path = path
        self.registry.request_reload()

    def follow_registry(self) -> None:
        """Keep what depends on the site registry in step with the one ingest uses: the
        lanes (status page, load summaries) follow its active units."""
        registry = self.registry.registry if self.registry else None
        if registry is None or registry is self._followed_registry or not registry.signers:
            return
        self._followed_registry = registry
        self._follow_lanes(registry)
        if self.broker_admin and self.connected.is_set():
            self.broker_admin.apply(registry, full=self._broker_resync)
            self._broker_resync = False
        elif self.broker_admin:
            self._followed_registry = None  # not connected: try again next tick

    def _follow_lanes(self, registry: Registry) -> None:
        lanes = {s.lane for s in registry if s.role == "device" and s.lane and not s.revoked}
        current = self.config.lanes
        default = max(current.values(), default=LANE_CAPACITY)
        wanted = {lane: current.get(lane, default) for lane in sorted(lanes)}
        if wanted != current:
            log.info("lanes follow the registry: %s", ", ".join(wanted) or "none")
            current.clear()  # in place: the web layer holds this very dict
            current.update(wanted)

    def init_mqtt(self) -> None:
        c = self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if c.mqtt.username:
            client.username_pw_set(c.mqtt.username, read_secret(c.mqtt.password_file))
        if c.mqtt.ca_file:
            client.tls_set(
                ca_certs=str(c.mqtt.ca_file),
                certfile=str(c.mqtt.cert_file) if c.mqtt.cert_file else None,
                keyfile=str(c.mqtt.key_file) if c.mqtt.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        status = topics.gateway_status_topic(c.site, c.id)
        client.will_set(status, encode_status("offline", 0), qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self.ingest.on_message
        self.client = client
        self.ingest.client = client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.mqtt.session_expiry_s
        props.ReceiveMaximum = self.config.mqtt.receive_maximum
        # the broker must not send us anything bigger (it drops it for us): an event is at
        # most MAX_EVENT_BYTES, so a unit's huge heartbeat never reaches this process
        props.MaximumPacketSize = MAX_PACKET_BYTES
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.error("broker refused the connection: %s", reason_code)
                return
            self.ingest.new_connection()
            _, self._subscribe_mid = client.subscribe(
                self.ingest.subscriptions(self.config.mqtt.shared_group)
            )
            n = self.distributor.republish_all()
            if self.recent_passes is not None and len(self.recent_passes):
                self.recent_passes.publish_now()  # the set rebuilt from the store at start
            self._broker_resync, self._followed_registry = True, None
            self.connected.set()
            log.info(
                "connected to broker (session present=%s), republished %d documents",
                flags.session_present,
                n,
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        """The gateway says "online" only once the broker granted its subscriptions."""
        if mid != self._subscribe_mid:
            return
        filters = self.ingest.subscriptions(self.config.mqtt.shared_group)
        refused = [
            f for (f, _), rc in zip(filters, reason_code_list, strict=False) if rc.is_failure
        ]
        for topic_filter in refused:
            log.error("broker refused subscription %s (check the broker ACL)", topic_filter)
        self._publish_status("online")
        self.ready.set()
        log.info("subscribed to %d topic filters", len(filters) - len(refused))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.ready.clear()
        if not self.stopping.is_set():
            log.warning("disconnected from broker: %s; paho reconnects", reason_code)

    def _publish_retained(self, topic: str, raw: bytes) -> None:
        if self.client is not None:
            self.client.publish(topic, raw, qos=1, retain=True)

    def _publish_control(self, topic: str, payload: bytes) -> None:
        if self.client is not None:
            self.client.publish(topic, payload, qos=1)

    def _publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        topic = topics.gateway_status_topic(self.config.site, self.config.id)
        payload = encode_status(state, int(time.time()))
        return self.client.publish(topic, payload, qos=1, retain=True)

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
        self.distributor.scan_folder()
        self.ingest.start()
        if self.forwarder:
            self.forwarder.start()
        if self.fetcher:
            self.fetcher.start()
        c = self.config.mqtt
        self.client.connect_async(
            c.host,
            c.port,
            keepalive=c.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()
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
        if self.client:
            try:
                if self.connected.is_set():
                    self._publish_status("stopped").wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
            self.client.loop_stop()
        if self.store:
            self.store.add_audit("gateway", "stop")
            self.store.close()
        log.info("gateway %s stopped", self.config.id)

    # --- numbers for the web layer ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Ingest rate, store depth, forward lag, rejects by reason and alerts."""
        store = self.store
        forward = self.forwarder.health() if self.forwarder else None
        # one alert model with `chot gateway status` and /metrics (gateway/web/alerts.py)
        alerts = gateway_alerts(
            store,
            central_url=self.config.central.url,
            unreachable_alert_min=self.config.central.unreachable_alert_min,
            now_ms=int(time.time() * 1000),
            forward=forward,
        )
        if not self.connected.is_set():
            alerts.append("mqtt_disconnected")
        documents = self.fetcher.health() if self.fetcher else None
        gaps = store.gap_totals()
        quarantined = store.quarantine_count()
        repeats = self.recent_passes.repeats() if self.recent_passes else []
        if any(r["cross_lane"] for r in repeats):
            alerts.append("pass_repeated")  # let through at two lanes while cut off
        return {
            "gateway": self.config.id,
            "site": self.config.site,
            "uptime_s": round(time.time() - self.started_at),
            "mqtt_connected": self.connected.is_set(),
            "ingest_rate_per_s": store.ingest_rate(60),
            "ingest_totals": dict(self.ingest.totals) if self.ingest else {},
            "store_depth": store.depth(),
            "store_bytes": store.size_bytes(),
            "disk_free_bytes": store.disk_free_bytes(),
            "forward_lag_s": store.forward_lag_s(),
            "forward": forward,
            "documents": documents,
            "rejects": store.reject_counts(),
            "quarantined": quarantined,
            "pass_repeats": repeats,  # newest first, no personal data (gateway/recent_passes.py)
            "gaps": gaps,
            "dropped": {
                name.removeprefix("dropped."): n
                for name, n in store.counters().items()
                if name.startswith("dropped.")
            },
            "alerts": alerts,
        }

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
