"""The scanner app: one object wiring camera -> decoder -> decider -> indicator + outbox -> uplink.

Follow one scan: ``step()`` reads a frame, the decoder returns its QR texts, the decider gives a
``Decision``; the indicator is told at once (non-blocking), and a new decision is signed and
committed to the outbox (one fsync, once per person); ``uplink.kick()`` wakes the MQTT thread,
which publishes it. Nothing in the frame loop waits for the network.

Device states shown on the LEDs (most serious first): no_camera, outbox_full, offline (broker
unreachable for more than ``offline_after_s``), idle. SIGTERM/SIGINT stop the loop cleanly and
publish the retained status "stopped". Under systemd (Type=notify) READY=1 is sent after boot
and WATCHDOG=1 from the frame loop.
"""

import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.sd_notify import SystemdNotifier
from device import camera
from device.clock_source import ClockSource
from device.config import DeviceConfig, load_signing_key
from device.decide import Decider, Decision, Policy, signature_checked
from device.decode import decode_frame, make_decoder
from device.documents_store import DocumentStore, parse_config_policy
from device.gpio import make_backend
from device.gpio.base import OutputBackend
from device.health import Health, cpu_temp_c
from device.indicator import Indicator
from device.outbox import Outbox, OutboxError
from device.uplink import MqttOptions, Uplink
from protocol.reasons import ProtocolError, Verdict
from protocol.trust import revocation_list_from_document, root_keyring, trust_list_from_document

log = logging.getLogger(__name__)

CAMERA_RETRY_S = 5.0
STATE_CHECK_S = 0.5


@dataclass
class RunStats:
    frames: int = 0
    decisions: int = 0  # new decisions (published or not recorded)
    events: int = 0  # committed to the outbox
    unrecorded: int = 0
    seconds: float = 0.0


def arrival_texts(
    passes: Sequence[str], *, arrival_per_min: float, hold_s: float, fps: float, seed: int = 0
) -> Iterator[str | None]:
    """Frame contents of a checkpoint queue: people arrive at random (Poisson) and each holds
    the next pass in front of the camera for ``hold_s``; between them, empty frames."""
    rng = np.random.default_rng(seed)
    hold = max(1, round(hold_s * fps))
    index = 0
    while True:
        gap = rng.exponential(60.0 / arrival_per_min)
        for _ in range(round(gap * fps)):
            yield None
        text = passes[index % len(passes)] if passes else None
        index += 1
        for _ in range(hold):
            yield text


class ThreadedSource:
    """Runs a blocking source (a keyboard wedge waits for Enter) in its own thread so the loop
    keeps ticking (watchdog, device state); ``read`` returns an empty frame when idle."""

    def __init__(self, inner: camera.FrameSource, idle_s: float = 0.5) -> None:
        self._inner = inner
        self._idle_s = idle_s
        self._queue: queue.Queue[camera.Frame | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="source", daemon=True)
        self._thread.start()
        self._ticks = 0

    def _run(self) -> None:
        while True:
            frame = self._inner.read()
            self._queue.put(frame)
            if frame is None:
                return

    def read(self) -> camera.Frame | None:
        try:
            return self._queue.get(timeout=self._idle_s)
        except queue.Empty:
            self._ticks += 1
            return camera.Frame(gray=None, t=time.monotonic(), index=-self._ticks)

    def close(self) -> None:
        self._inner.close()


def open_configured_source(config: DeviceConfig) -> camera.FrameSource:
    cam = config.camera
    kind = "picamera" if cam.source == "picamera2" else cam.source
    if kind == "picamera":
        return camera.open_source(kind, width=cam.width, height=cam.height)
    if kind == "opencv":
        return camera.open_source(kind, device=cam.device, width=cam.width, height=cam.height)
    if kind == "files":
        interval = 1.0 / cam.fps if cam.loop else 0.0  # a replay is paced like a camera
        return camera.open_source(kind, paths=cam.paths, loop=cam.loop, interval=interval)
    if kind == "keyboard":
        return ThreadedSource(camera.open_source(kind))
    passes: list[str] = []
    if cam.passes_file is not None:
        try:
            passes = [ln.strip() for ln in cam.passes_file.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise camera.CameraError(f"cannot read passes_file: {exc.strerror}") from None
    texts = arrival_texts(
        passes,
        arrival_per_min=cam.arrival_per_min,
        hold_s=cam.hold_s,
        fps=cam.fps,
        seed=cam.seed,
    )
    return camera.open_source(
        "synthetic",
        texts=texts,
        size=(cam.width, cam.height),
        difficulty=cam.difficulty,
        seed=cam.seed,
        interval=1.0 / cam.fps,
    )


class DeviceApp:
    """Build with a config; ``source``/``backend``/``clock`` may be injected (tests, demo)."""

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
        self._owns_backend = backend is None
        if backend is None:
            backend = make_backend(config.gpio.backend, dict(config.gpio.pins))
        else:
            backend.setup(dict(config.gpio.pins))  # injected (tests, demo): set up, not closed
        self.backend = backend
        self.indicator = Indicator(self.backend, state="booting")
        self.clock = clock or ClockSource()
        self.health = Health()
        self.notifier = SystemdNotifier()
        self.refused: dict[str, str] = {}  # document kind -> last refusal reason
        self._stop = threading.Event()
        self._state = "booting"
        self._state_checked = float("-inf")
        self._camera_missing = False
        self._camera_retry_at = 0.0
        self._outbox_failed = False
        self._unrecorded_pending = 0  # reported in the next recorded event
        self.stats = RunStats()

        state_dir = config.device.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = DocumentStore(
            state_dir, root_keyring(config.trust.root_keys()), self.device_id
        )
        self._seed_documents()
        self.decider = Decider(
            self.store.trust_list(),
            self.store.revocation_list(),
            self._policy(),
            self.clock.read,
        )
        self.outbox = Outbox(
            state_dir / "outbox.db",
            self.device_id,
            config.device.site,
            load_signing_key(config.device.signing_key_file),
            max_events=config.outbox.max_events,
            max_db_bytes=config.outbox.max_db_mb * 1024 * 1024,
        )
        self.decoder = make_decoder(config.decoder.name)
        self.uplink: Uplink | None = None
        if connect:
            self.uplink = Uplink(
                self._mqtt_options(),
                self.device_id,
                config.device.site,
                self.outbox,
                on_document=self.on_document,
                health=self.health_snapshot,
            )
            self.uplink.start()
        log.info(
            "device %s: booted, outbox at seq %d (%d pending)",
            self.device_id,
            self.outbox.last_seq,
            self.outbox.depth,
        )

    # -- boot helpers -----------------------------------------------------------------------

    def _seed_documents(self) -> None:
        for kind, path in (
            ("trust", self.config.trust.trust_list_file),
            ("revocations", self.config.trust.revocation_list_file),
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

    def _policy(self) -> Policy:
        p = self.config.policy
        values: dict[str, Any] = {
            "allowed_kinds": p.allowed_kinds,
            "debounce_s": p.debounce_s,
            "duplicate_window_s": p.duplicate_window_s,
        }
        doc = self.store.current("config")
        if doc is not None:
            values.update(parse_config_policy(doc.body))
        return Policy.make(resignal_s=p.resignal_s, skew_s=self.config.trust.skew_s, **values)

    def _mqtt_options(self) -> MqttOptions:
        m = self.config.mqtt
        return MqttOptions(
            host=m.host,
            port=m.port,
            username=m.username,
            password=m.password(),
            ca_file=m.ca_file,
            cert_file=m.cert_file,
            key_file=m.key_file,
            keepalive_s=m.keepalive_s,
            heartbeat_s=m.heartbeat_s,
            session_expiry_s=m.session_expiry_s,
            reconnect_max_s=m.reconnect_max_s,
            window=m.window,
            ack_timeout_s=m.ack_timeout_s,
        )

    # -- documents from MQTT (paho thread) --------------------------------------------------

    def on_document(self, kind: str, payload: bytes) -> None:
        """Verify, refuse rollbacks, persist, then hand to the decider."""
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
        else:
            self.decider.set_policy(self._policy())

    # -- the frame loop ---------------------------------------------------------------------

    def _ensure_source(self) -> camera.FrameSource | None:
        if self._source is not None:
            return self._source
        now = time.monotonic()
        if now < self._camera_retry_at:
            return None
        try:
            self._source = open_configured_source(self.config)
            self._camera_missing = False
        except (camera.CameraError, ValueError) as exc:
            if not self._camera_missing:
                log.error("device %s: camera unavailable: %s", self.device_id, exc)
            self._camera_missing = True
            self._camera_retry_at = now + CAMERA_RETRY_S
        return self._source

    def step(self) -> bool:
        """Process one frame. False when the source has ended."""
        source = self._ensure_source()
        if source is None:
            self._update_state()
            self._stop.wait(0.1)
            return True
        try:
            frame = source.read()
        except camera.CameraError as exc:
            log.error("device %s: camera failed: %s", self.device_id, exc)
            source.close()
            self._source, self._camera_missing = None, True
            self._camera_retry_at = time.monotonic() + CAMERA_RETRY_S
            return True
        if frame is None:
            return False
        t0 = time.perf_counter()
        texts = decode_frame(self.decoder, frame)
        decode_s = time.perf_counter() - t0
        self.stats.frames += 1
        self.health.frame(decode_s)
        for text in texts:
            self.handle_text(text, int(decode_s * 1e6))
        self._update_state()
        self.notifier.watchdog()
        return True

    def handle_text(self, text: str, dec_us: int = 0) -> Decision:
        decision = self.decider.decide(text)
        if decision.signal:
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
        clock = self.clock.read()
        trust = self.decider.trust
        snap: dict[str, Any] = {
            "fps": round(self.health.fps(), 1),
            "decoder_ms": round(self.health.decoder_ms, 2),
            "outbox_depth": self.outbox.depth,
            "outbox_full": self.outbox.full or self._outbox_failed,
            "unrecorded": self.health.unrecorded,
            "seq": self.outbox.last_seq,
            "clock": clock.state.value,
            "trust_version": trust.version if trust else None,
            "state": self._state,
        }
        temp = cpu_temp_c()
        if temp is not None:
            snap["cpu_temp"] = temp
        return snap

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
        log.info("device %s: stopped after %d frames", self.device_id, self.stats.frames)


def run_from_config(path: Path, seconds: float | None = None) -> RunStats:
    from device.config import load_config

    return DeviceApp(load_config(path)).run(seconds)
