"""`chot demo`: a whole site on this machine, the way one is deployed.

It provisions an ops home, a site with a gateway and 4 scanner units (synthetic camera frames of
valid, expired, forged, revoked, repeated and non-chot QR codes), starts a private Mosquitto with
the generated TLS + ACL config, the central store (SQLite by default) and the gateway with its
status page, shows each unit's lights, and ends on Ctrl-C or after --duration with one JSON line
computed from the central store itself.
"""

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from central import queries
from central.backends import open_store
from chot.system import OPERATOR, ProvisionedSite, provision_site, site_services
from common.i18n import N_, cli_translator
from common.reason_texts import reason_text, verdict_text
from device.app import DeviceApp
from device.config import load_config
from device.gpio.simulated import SimulatedBackend

LIGHTS_LINE = N_("decisions {decisions}  outbox {outbox}")
# a unit's state (device/indicator.py STATES) as the person watching the demo reads it
STATE_WORDS = {
    "booting": N_("starting"),
    "no_camera": N_("no camera"),
    "offline": N_("offline"),
    "outbox_full": N_("outbox full"),
    "idle": N_("ready"),
}

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 60.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole system on this machine")
    demo.add_argument("--duration", type=float, help="seconds of scanning (default: until Ctrl-C)")
    demo.add_argument("--workdir", type=Path, help="keep all files here (default: a temp dir)")
    demo.add_argument(
        "--central", help="central store URL (default: SQLite in the work dir), e.g. postgresql://…"
    )
    demo.add_argument("--devices", type=int, default=4, help="scanner units (default 4)")
    demo.add_argument(
        "--rate", type=float, default=30.0, help="people per minute per lane (default 30)"
    )
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.WARNING)  # the terminal shows the lights, logs go to files
    # A Pi without NTP shows amber (clock_untrusted) for every pass; the demo machine's clock is
    # taken as synced. CHOT_CLOCK_STATE=unknown chot demo shows the amber path.
    os.environ.setdefault("CHOT_CLOCK_STATE", "synced")
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chot-demo-"))
    if keep and any(workdir.iterdir() if workdir.exists() else []):
        print(f"chot demo: {workdir} is not empty; give a new --workdir", file=sys.stderr)
        return 2
    try:
        return Demo(workdir, args).run()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


class Demo:
    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.stop = threading.Event()
        self.devices: list[DeviceApp] = []
        self.backends: list[SimulatedBackend] = []

    def run(self) -> int:
        started = time.monotonic()
        print(f"chot demo: provisioning a site in {self.workdir} …", flush=True)
        site = provision_site(
            self.workdir,
            devices=self.args.devices,
            central_store=self.args.central,
            arrival_per_min=self.args.rate,
        )
        services = site_services(site)
        previous = signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        try:
            for name in ("broker", "central", "gateway"):
                services[name].start()
            self._start_devices(site)
            self._banner(site, time.monotonic() - started)
            self._scan(site)
            drained = self._drain(site)
            summary = self._summary(site, drained)
        finally:
            for app in self.devices:
                app.close()
            for name in ("gateway", "central", "broker"):
                services[name].stop()
            signal.signal(signal.SIGINT, previous)
        print(json.dumps(summary), flush=True)
        return 0 if summary["lost"] == 0 and summary["duplicates"] == 0 else 1

    # --- the parts --------------------------------------------------------------------------

    def _start_devices(self, site: ProvisionedSite) -> None:
        for path in site.device_configs:
            backend = SimulatedBackend()
            self.backends.append(backend)
            self.devices.append(DeviceApp(load_config(path), backend=backend))

    def _banner(self, site: ProvisionedSite, took: float) -> None:
        print(
            f"\n  status page : {site.web_url}/  "
            f"(login: {OPERATOR} / {site.operator_password}; site CA: {site.web_ca})\n"
            f"  broker      : mqtts://127.0.0.1:{site.broker_port} (TLS, dynamic security)\n"
            f"  central     : {site.central_url}\n"
            f"  work dir    : {self.workdir} (logs in logs/)\n"
            f"  ready in {took:.1f} s — Ctrl-C to stop\n",
            flush=True,
        )

    def _scan(self, site: ProvisionedSite) -> None:
        threads = [
            threading.Thread(target=self._device_loop, args=(app,), daemon=True)
            for app in self.devices
        ]
        for thread in threads:
            thread.start()
        deadline = None if self.args.duration is None else time.monotonic() + self.args.duration
        tty = sys.stdout.isatty()
        lines = 0
        while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
            text = self._lights()
            if tty:
                if lines:
                    print(f"\x1b[{lines}F", end="")
                print(text, flush=True)
                lines = text.count("\n") + 1
            self.stop.wait(0.25 if tty else 5.0)
            if not tty:
                print(text, flush=True)
        self.stop.set()
        for thread in threads:
            thread.join(10)

    def _device_loop(self, app: DeviceApp) -> None:
        while not self.stop.is_set():
            app.run_for(frames=50)

    def _lights(self) -> str:
        """Each unit's lights and state, in the reader's language (CHOT_LANG, else Vietnamese)."""
        tr = cli_translator()
        label = tr.gettext(LIGHTS_LINE)
        rows = []
        for app, backend in zip(self.devices, self.backends, strict=True):
            health = app.health_snapshot()
            state = STATE_WORDS.get(app.state)
            text = label.format(
                decisions=f"{app.stats.events:>5}", outbox=f"{health.get('outbox_depth', 0):>4}"
            )
            last = app.last_signalled  # the words a unit with a screen shows staff
            said = (
                f"{verdict_text(last.verdict.value, tr)}: "
                f"{reason_text(last.reason.value, tr).line()}"
                if last
                else ""
            )
            rows.append(
                f"  {app.device_id:<11} {backend.render(tr)}  {text}  "
                f"{tr.gettext(state) if state else app.state:<14}  {said[:60]}"
                + ("\x1b[K" if sys.stdout.isatty() else "")
            )
        return "\n".join(rows)

    def _drain(self, site: ProvisionedSite) -> bool:
        """Scanning has stopped: wait until every decision is acknowledged and at the centre."""
        print("chot demo: draining outboxes and the gateway …", flush=True)
        decided = sum(app.stats.events for app in self.devices)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            outboxes = sum(app.outbox.depth for app in self.devices)
            if outboxes == 0 and self._central_scans(site) >= decided:
                return True
            time.sleep(0.5)
        return False

    def _central_scans(self, site: ProvisionedSite) -> int:
        store = open_store(site.central_url)
        try:
            rows = store.fetch("SELECT COUNT(*) AS n FROM events WHERE typ = 'scan'")
            return int(rows[0]["n"])
        except Exception:  # schema not there yet
            return 0
        finally:
            store.close()

    def _summary(self, site: ProvisionedSite, drained: bool) -> dict[str, Any]:
        decided = sum(app.stats.events for app in self.devices)
        store = open_store(site.central_url)
        try:
            stats = queries.stats(store)
            scans = store.fetch(
                "SELECT verdict, COUNT(*) AS n FROM events WHERE typ = 'scan' GROUP BY verdict"
            )
        finally:
            store.close()
        at_centre = sum(int(r["n"]) for r in scans)
        return {
            "scans_decided": decided,
            "events_central": stats["events_central"],
            "lost": max(0, decided - at_centre),
            "duplicates": stats["duplicates"],
            "by_verdict": {str(r["verdict"]): int(r["n"]) for r in scans},
            "drained": drained,
            "store": site.central_url,
        }
