"""The scanner app: one object wiring camera -> decoder -> decider -> indicator + outbox -> uplink.

Follow one scan: ``step()`` reads a frame, the decoder returns its QR texts, the decider gives a
``Decision``; the indicator is told at once (non-blocking), and a new decision is signed and
committed to the outbox (one fsync, once per person); ``uplink.kick()`` wakes the MQTT thread,
which publishes it. Nothing in the frame loop waits for the network.

Device states shown on the LEDs (most serious first): no_camera, outbox_full, offline (broker
unreachable for more than ``offline_after_s``), idle. SIGTERM/SIGINT stop the loop cleanly and
publish the retained status "stopped". Under systemd (Type=notify) READY=1 is sent after boot
and WATCHDOG=1 from every turn of the loop, whatever the camera does: a unit without a camera is
the ``no_camera`` state (reopened with a doubling backoff, ``camera: missing`` in its heartbeat),
not a restart loop; only a loop that hangs stops the pings.
"""

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.sd_notify import SystemdNotifier
from device import camera, health
from device.clock_source import ClockSource, SyncProbe
from device.config import DeviceConfig, load_signing_key
from device.decide import Decider, Decision, Policy, signature_checked
from device.decode import decode_frame, make_decoder
from device.documents_store import DocumentStore, parse_config_policy
from device.gpio import make_backend
from device.gpio.base import OutputBackend
from device.health import Health
from device.indicator import Indicator
from device.outbox import Outbox, OutboxError
from device.recent_passes import RecentPasses
from device.uplink import MqttOptions, Uplink
from protocol.dcc_policy import DccPolicy
from protocol.dcc_trust import dcc_trust_from_document
from protocol.reasons import ProtocolError, Verdict
from protocol.recent import RecentError, open_recent
from protocol.trust import revocation_list_from_document, root_keyring, trust_list_from_document

log = logging.getLogger(__name__)

STATE_CHECK_S = 0.5
IDLE_WAIT_S = 0.1  # a turn of the loop without a camera: state, watchdog, then this pause


@dataclass
class RunStats:
    frames: int = 0
    decisions: int = 0  # new decisions (published or not recorded)
    events: int = 0  # committed to the outbox
    unrecorded: int = 0
    seconds: float = 0.0


class DeviceApp:
    """Build with a config; ``source``/``backend``/``clock`` may be injected (tests, demo).

    The constructor runs the ``init_*`` steps in data-flow order, then ``start_uplink`` unless
    ``connect`` is False (tests that drive the link themselves, offline benchmarks)."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        source: camera.FrameSource | None = None,
        backend: OutputBackend | None = None,
        clock: ClockSource | None = None,
        connect: bool = True,
    ) -> None:
        self.config = config
        self.device_id = config.device.id
        self._source = source
        self.clock = clock or ClockSource(
            probe=SyncProbe(marker=config.clock.timesyncd_marker),
            probe_interval_s=config.clock.probe_interval_s,
        )
        self.health = Health()
        self.notifier = SystemdNotifier()
        self.refused: dict[str, str] = {}  # document kind -> last refusal reason
        self._stop = threading.Event()
        self._state = "booting"
        self._state_checked = float("-inf")
        self._camera_missing = False
        self._camera_retry_at = 0.0
        self._camera_backoff_s = config.camera.reopen_min_s
        self._outbox_failed = False
        self._unrecorded_pending = 0  # reported in the next recorded event
        self.stats = RunStats()
        self.last_signalled: Decision | None = None
        self.uplink: Uplink | None = None

        self.init_indicator(backend)
        self.init_documents()
        self.init_decider()
        self.init_outbox()
        self.decoder = make_decoder(config.decoder.name)
        if connect:
            self.start_uplink()
        log.info(
            "device %s: booted, outbox at seq %d (%d pending)",
            self.device_id,
            self.outbox.last_seq,
            self.outbox.depth,
        )

    # -- boot steps -------------------------------------------------------------------------

    def init_indicator(self, backend: OutputBackend | None) -> None:
        """Lights first, so a unit that fails further on still shows it is booting."""
        self._owns_backend = backend is None
        if backend is None:
            backend = make_backend(self.config.gpio.backend, dict(self.config.gpio.pins))
        else:
            backend.setup(dict(self.config.gpio.pins))  # injected (tests, demo): set up, not closed
        self.backend = backend
        self.indicator = Indicator(self.backend, state="booting")

    def init_documents(self) -> None:
        """The persisted signed documents, plus the bundled ones when they are newer."""
        state_dir = self.config.device.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = DocumentStore(
            state_dir, root_keyring(self.config.trust.root_keys()), self.device_id
        )
        for kind, path in (
            ("trust", self.config.trust.trust_list_file),
            ("revocations", self.config.trust.revocation_list_file),
            ("dcc-trust", self.config.trust.dcc_trust_list_file),
        ):
            if path is None or not path.is_file():
                continue
            try:
                self.store.offer_file(kind, path)
            except (ProtocolError, OSError) as exc:
                log.error("device %s: bundled %s %s refused: %s", self.device_id, kind, path, exc)
        newest = self.store.newest_issued_at()
        if newest is not None:
            self.clock.note_document(newest)

    def init_decider(self) -> None:
        self.decider = Decider(
            self.store.trust_list(),
            self.store.revocation_list(),
            self._policy(),
            self.clock.read,
            dcc_trust=self.store.dcc_trust(),
            # one pass, one entry: kept on disk, fed by the gateway (device/recent_passes.py)
            recent=RecentPasses(self.config.device.state_dir / "recent-passes.db"),
        )

    def init_outbox(self) -> None:
        self.outbox = Outbox(
            self.config.device.state_dir / "outbox.db",
            self.device_id,
            self.config.device.site,
            load_signing_key(self.config.device.signing_key_file),
            max_events=self.config.outbox.max_events,
            max_db_bytes=self.config.outbox.max_db_mb * 1024 * 1024,
            settle_s=self.config.outbox.settle_s,
        )

    def start_uplink(self, options: MqttOptions | None = None) -> None:
        """Connect to the site broker (in the background); ``options`` default to the config."""
        self.uplink = Uplink(
            options or MqttOptions.from_config(self.config.mqtt),
            self.device_id,
            self.config.device.site,
            self.outbox,
            on_document=self.on_document,
            health=self.health_snapshot,
            gateway_keys=self.config.trust.gateway_keys(),
            on_gateway_time=self.clock.note_gateway_time,
        )
        self.uplink.start()

    def _policy(self) -> Policy:
        """The file's [policy] with the signed config's `policy` over it. For DCCs: the
        signed config's `policy.dcc` over [policy.dcc] key by key, over the defaults."""
        p = self.config.policy
        values: dict[str, Any] = {
            "allowed_kinds": p.allowed_kinds,
            "debounce_s": p.debounce_s,
            "duplicate_window_s": p.duplicate_window_s,
        }
        doc = self.store.current("config")
        dcc_rules = p.dcc.model_dump()
        if doc is not None:
            values.update(parse_config_policy(doc.body))  # validates the whole signed map
            dcc_rules.update(doc.body.get("policy", {}).get("dcc", {}))
        values["dcc"] = DccPolicy.from_mapping(dcc_rules)
        return Policy.make(resignal_s=p.resignal_s, skew_s=self.config.trust.skew_s, **values)

    # -- documents from MQTT (paho thread) --------------------------------------------------

    def on_document(self, kind: str, payload: bytes) -> None:
        """Verify, refuse rollbacks, persist, then hand to the decider."""
        if kind == "recent":
            self.on_recent_passes(payload)
            return
        try:
            offer = self.store.offer(kind, payload)
        except ProtocolError as exc:
            self.refused[kind] = exc.reason.value
            log.warning("device %s: %s refused: %s", self.device_id, kind, exc)
            return
        if not offer.adopted:
            return
        doc = offer.document
        self.clock.note_document(doc.issued_at)
        if kind == "trust":
            self.decider.set_trust(trust_list_from_document(doc))
        elif kind == "revocations":
            self.decider.set_revocations(revocation_list_from_document(doc))
        elif kind == "dcc-trust":
            self.decider.set_dcc_trust(dcc_trust_from_document(doc))
        else:
            self.decider.set_policy(self._policy())

    def on_recent_passes(self, payload: bytes) -> None:
        """The gateway's signed snapshot of the site's accepted passes: merged, never waited
        for. Ages count from the gateway's signing time, plus the time since when this
        unit's clock is synced (a retained snapshot may be old)."""
        try:
            snapshot = open_recent(
                payload, self.config.trust.gateway_keys(), self.config.device.site
            )
        except RecentError as exc:
            self.refused["recent"] = exc.reason
            log.warning("device %s: recent passes refused: %s", self.device_id, exc)
            return
        clock = self.clock.read()
        late_s = max(0.0, clock.now - snapshot.t_ms / 1000) if clock.trusted else 0.0
        merged = self.decider.recent.merge((r.ref, r.age_s + late_s) for r in snapshot.refs)
        log.debug("device %s: %d recent passes from %s", self.device_id, merged, snapshot.gw)

    # -- the frame loop ---------------------------------------------------------------------

    def _ensure_source(self) -> camera.FrameSource | None:
        """The open source, or None while it cannot be opened (retried with a backoff that
        doubles from ``reopen_min_s`` to ``reopen_max_s`` and resets once a frame arrives)."""
        if self._source is not None:
            return self._source
        now = time.monotonic()
        if now < self._camera_retry_at:
            return None
        try:
            self._source = camera.open_from_config(self.config.camera)
        except (camera.CameraError, ValueError) as exc:
            self._camera_lost(f"camera unavailable: {exc}")
            return None
        log.info("device %s: camera %s open", self.device_id, self.config.camera.source)
        return self._source

    def _camera_lost(self, why: str) -> None:
        """Show no_camera and schedule the next attempt; logged once per outage and again
        when the backoff reaches its ceiling, not at every retry."""
        cam = self.config.camera
        wait_s = self._camera_backoff_s
        self._camera_backoff_s = min(wait_s * 2, cam.reopen_max_s)
        if not self._camera_missing or (wait_s < cam.reopen_max_s == self._camera_backoff_s):
            log.error("device %s: %s (next try in %.1f s)", self.device_id, why, wait_s)
        self._camera_missing = True
        self._camera_retry_at = time.monotonic() + wait_s
        self._state_checked = float("-inf")  # show it now

    def _camera_back(self) -> None:
        log.info("device %s: camera delivering frames again", self.device_id)
        self._state_checked = float("-inf")
        self._camera_missing = False
        self._camera_backoff_s = self.config.camera.reopen_min_s

    def step(self) -> bool:
        """One turn of the loop: feed the watchdog, then process one frame if there is a
        camera. False when the source has ended."""
        self.notifier.watchdog()
        source = self._ensure_source()
        if source is None:
            self._update_state()
            self._stop.wait(IDLE_WAIT_S)
            return True
        try:
            frame = source.read()
        except camera.CameraError as exc:
            source.close()
            self._source = None
            self._camera_lost(f"camera failed: {exc}")
            self._update_state()
            return True
        if frame is None:
            return False
        if self._camera_missing:
            self._camera_back()
        t0 = time.perf_counter()
        texts = decode_frame(self.decoder, frame)
        decode_s = time.perf_counter() - t0
        self.stats.frames += 1
        self.health.frame(decode_s)
        for text in texts:
            self.handle_text(text, int(decode_s * 1e6))
        self._update_state()
        return True

    def handle_text(self, text: str, dec_us: int = 0) -> Decision:
        decision = self.decider.decide(text)
        if decision.signal:
            self.last_signalled = decision  # what a unit with a screen shows in words
            if decision.verdict is Verdict.PASS:
                self.indicator.pass_()
            elif decision.verdict is Verdict.WARN:
                self.indicator.warn(decision.reason.value)
            else:
                self.indicator.fail(decision.reason.value)
        if decision.publish:
            self.stats.decisions += 1
            self._record(decision, dec_us)
        return decision

    def _record(self, d: Decision, dec_us: int) -> None:
        claims = d.result.claims if signature_checked(d) else None
        fields: dict[str, Any] = {
            "typ": "scan",
            "t_ms": int(time.time() * 1000),
            "clock": d.clock.state.value,
            "verdict": d.verdict.value,
            "reason": d.reason.value,
            "lane": self.config.device.lane,
            "ref": d.pass_ref,
            "sub": claims.sub if claims else None,
            "kid": d.result.kid,
            "kind": claims.kind if claims else None,
            "tlv": d.trust_version,
            "dec_us": dec_us,
            "ver_us": d.ver_us,
        }
        if self._unrecorded_pending:
            fields["extra"] = {"unrecorded": self._unrecorded_pending}
        try:
            seq, _ = self.outbox.append(fields)
        except OutboxError as exc:
            self._unrecorded_pending += 1
            self.health.unrecorded += 1
            self.stats.unrecorded += 1
            self._outbox_failed = True
            log.error(
                "device %s: decision not recorded (%s), %d so far",
                self.device_id,
                exc.reason,
                self.health.unrecorded,
            )
            return
        self._unrecorded_pending = 0
        self._outbox_failed = False
        self.stats.events += 1
        log.debug("device %s: event seq %d %s/%s", self.device_id, seq, d.verdict, d.reason)
        if self.uplink is not None:
            self.uplink.kick()

    def _update_state(self) -> None:
        now = time.monotonic()
        if now - self._state_checked < STATE_CHECK_S:
            return
        self._state_checked = now
        if self._source is None and not self._camera_missing:
            return  # the camera has not been tried yet: still booting, not "idle"
        if self._camera_missing:
            state = "no_camera"
        elif self.outbox.full or self._outbox_failed:
            state = "outbox_full"
        elif self.uplink is not None and (
            self.uplink.offline_for() > self.config.device.offline_after_s
        ):
            state = "offline"
        else:
            state = "idle"
        if state != self._state:
            log.info("device %s: state %s", self.device_id, state)
            self._state = state
            self.indicator.state(state)

    @property
    def state(self) -> str:
        return self._state

    def health_snapshot(self) -> dict[str, Any]:
        """Heartbeat fields (called from the uplink's pump thread)."""
        trust = self.decider.trust
        return health.snapshot(
            self.health,
            self.outbox,
            self.clock.read(),
            outbox_failed=self._outbox_failed,
            trust_version=trust.version if trust else None,
            state=self._state,
            camera="missing" if self._camera_missing else "ok",
        )

    # -- running ----------------------------------------------------------------------------

    def run_for(self, frames: int | None = None, seconds: float | None = None) -> RunStats:
        """Run the loop for a number of frames and/or seconds (tests, demo, benchmark)."""
        start = time.monotonic()
        done = 0
        self._update_state()
        while not self._stop.is_set():
            if frames is not None and done >= frames:
                break
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            if not self.step():
                break
            done += 1
        self.stats.seconds += time.monotonic() - start
        return self.stats

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self, seconds: float | None = None) -> RunStats:
        """The service entry: signals, READY=1, loop until SIGTERM/SIGINT, clean shutdown."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        self.notifier.ready("scanning")
        try:
            return self.run_for(seconds=seconds)
        finally:
            self.close()

    def close(self) -> None:
        self.notifier.stopping()
        if self.uplink is not None:
            self.uplink.stop()
        self.indicator.close()
        if self._owns_backend:
            self.backend.close()
        if self._source is not None:
            self._source.close()
        self.outbox.close()
        self.decider.recent.close()
        log.info("device %s: stopped after %d frames", self.device_id, self.stats.frames)


def run_from_config(path: Path, seconds: float | None = None) -> RunStats:
    from device.config import load_config

    return DeviceApp(load_config(path)).run(seconds)
