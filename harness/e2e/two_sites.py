"""Two live sites and one centre, provisioned by one ops home and changed only through it.

Each site has its own Mosquitto (dynamic security), gateway and units; the centre takes their
events and relays what ops publishes. After provisioning, every bundle is copied to a
"deployed" folder and run from there, so nothing the ops tool writes later (it refreshes the
bundles it keeps) reaches a running gateway or unit except through `chot provision publish`,
the central and the gateway's own fetching.

Each broker also gets one test-only login, `e2e-relay`, that may publish into its site's
device topics: it stands in for any path a revoked unit's signed event might still take (a
copied SD card behind another login), so the test can show the gateway refusing it.
"""

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from central.config import hash_token
from chot.system import HOUR, Service, chot_argv, free_port
from harness.config_files import edit_toml
from harness.e2e.device_proc import DeviceProc, outbox_state
from harness.e2e.services import kill_services, query_gateway_store
from harness.gateway_cli import gateway_status_json
from harness.polling import wait_until
from harness.scan_events import signed_scan
from protocol.topics import event_topic
from provisioning import dynsec
from provisioning.broker import write_broker_config, write_local_config
from provisioning.home import OpsHome

ROOT = Path(__file__).resolve().parents[2]
RELAY = "e2e-relay"
MOSQUITTO = os.environ.get("CHOT_MOSQUITTO", "/usr/sbin/mosquitto")


@dataclass
class LiveSite:
    """One site's processes and deployed folders."""

    site: str
    gateway_id: str
    broker_port: int
    broker_dir: Path
    gateway_dir: Path
    broker: Service
    gateway: Service
    relay_password: str
    units: dict[str, DeviceProc] = field(default_factory=dict)

    @property
    def gateway_db(self) -> Path:
        return self.gateway_dir / "state" / "gateway.db"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return query_gateway_store(self.gateway_db, sql, params)

    @property
    def config(self) -> Path:
        return self.gateway_dir / "gateway.toml"

    def status(self) -> dict[str, Any]:
        """`chot gateway status --json`, as an operator would run it."""
        return gateway_status_json(self.config, cli=chot_argv())


class TwoSites:
    """Provision with the real ops tool, deploy, run, change through ops only, tear down."""

    def __init__(self, workdir: Path, sites: tuple[str, ...] = ("HN-01", "SG-01")) -> None:
        self.workdir = Path(workdir).resolve()
        self.now = int(time.time())
        self.home = OpsHome.init(self.workdir / "ops", now=self.now - HOUR)
        self.home.sign_trust_list(now=self.now)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CHOT_HOME": str(self.home.path),
            "CHOT_CLOCK_STATE": "synced",  # this machine has no NTP sync; a deployed Pi has
        }
        self.central_port = free_port()
        self.central_url = f"http://127.0.0.1:{self.central_port}"
        self.ops_token_file = self._central_config()
        self.sites: dict[str, LiveSite] = {}
        for site in sites:
            self.sites[site] = self._provision_site(site)
        for live in self.sites.values():  # device bundles pin the gateway added after them
            for unit in live.units.values():
                self._deploy_unit(live, unit)
        self.central = Service(
            "central",
            chot_argv(
                "central",
                "serve",
                "--config",
                str(self.workdir / "central.json"),
                "--port",
                str(self.central_port),
            ),
            self.workdir,
            self.central_port,
        )

    # -- provisioning -------------------------------------------------------------------------

    def _central_config(self) -> Path:
        token = os.urandom(16).hex()
        token_file = self.workdir / "ops.token"
        token_file.write_text(token + "\n")
        config = {
            "store": f"sqlite:///{self.workdir / 'central.db'}",
            "registry": str(self.home.path / "registry.json"),
            "operators": {"ops": {"token_sha256": hash_token(token), "roles": ["ops"]}},
            "root_public_keys": [self.home.state.root_public_key],
        }
        (self.workdir / "central.json").write_text(json.dumps(config, indent=2))
        return token_file

    def _provision_site(self, site: str) -> LiveSite:
        prefix = site.split("-")[0].lower()
        port = free_port()
        first = f"{prefix}-lane1"
        self.home.add_device(
            site,
            first,
            lane="lane-1",
            out=self.workdir / "ops-bundles" / first,
            broker_host="127.0.0.1",
            broker_port=port,
            camera_source="keyboard",
            gpio_backend="simulated",
        )
        gateway_id = f"{prefix}-gw"
        self.home.add_gateway(
            site,
            gateway_id,
            out=self.workdir / "ops-bundles" / gateway_id,
            central_url=self.central_url,
        )
        broker_dir = self.workdir / site / "broker"
        write_broker_config(self.home, site, broker_dir)
        relay_password = os.urandom(12).hex()
        self._add_relay(site, broker_dir, relay_password)
        conf = write_local_config(broker_dir, port)
        gateway_dir = self.workdir / site / gateway_id
        shutil.copytree(self.workdir / "ops-bundles" / gateway_id, gateway_dir)
        edit_toml(
            gateway_dir / "gateway.toml",
            root={"registry_check_s": 0.5},
            mqtt={"keepalive_s": 5},
            central={
                "documents_poll_s": 1.0,  # short here: the test waits on it several times
                "backoff_initial_s": 0.2,
                "backoff_max_s": 1.0,
                "idle_poll_s": 0.2,
                "connect_timeout_s": 2.0,
            },
        )
        live = LiveSite(
            site,
            gateway_id,
            port,
            broker_dir,
            gateway_dir,
            Service(f"broker-{site}", [MOSQUITTO, "-c", str(conf)], self.workdir, port),
            Service(
                f"gateway-{site}",
                chot_argv("gateway", "run", "--config", str(gateway_dir / "gateway.toml")),
                self.workdir,
            ),
            relay_password,
        )
        live.units[first] = DeviceProc(0, Path(), self.workdir, self.env, device_id=first)
        return live

    def _add_relay(self, site: str, broker_dir: Path, password: str) -> None:
        path = broker_dir / "data" / dynsec.CONFIG_NAME
        document = dynsec.read_document(path)
        assert document is not None
        role = {
            "rolename": RELAY,
            "acls": [
                {
                    "acltype": "publishClientSend",
                    "topic": f"chot/v1/{site}/dev/+/event",
                    "priority": 0,
                    "allow": True,
                }
            ],
        }
        document["roles"].append(role)
        document["clients"].append(dynsec.client(RELAY, password, [RELAY]))
        dynsec.write_document(path, document)

    def _deploy_unit(self, live: LiveSite, unit: DeviceProc) -> None:
        """Copy the unit's bundle to where it runs, tuned for fast recovery."""
        folder = self.workdir / live.site / unit.id
        shutil.copytree(self.workdir / "ops-bundles" / unit.id, folder)
        config = folder / "device.toml"
        edit_toml(
            config,
            device={"offline_after_s": 2.0},
            camera={"source": "keyboard"},
            policy={"debounce_s": 1},
            mqtt={
                "heartbeat_s": 1.0,
                "keepalive_s": 5,
                "reconnect_max_s": 2.0,
                "ack_timeout_s": 3.0,
            },
        )
        unit.config = config

    # -- ops, through the command line ------------------------------------------------------

    def ops(self, *args: str) -> dict[str, Any]:
        """`chot provision ARGS --json` with this home; its JSON answer."""
        out = subprocess.run(
            chot_argv("provision", *args, "--json"),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=self.env,
        )
        assert out.returncode == 0, (
            f"chot provision {args}: {out.stdout[-1000:]}{out.stderr[-2000:]}"
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def publish(self) -> dict[str, Any]:
        return self.ops(
            "publish", "--central", self.central_url, "--token-file", str(self.ops_token_file)
        )

    def add_unit(self, site: str, device_id: str, lane: str) -> DeviceProc:
        """`chot provision device add`, deployed and started (it has no login until the site
        gateway gives it one)."""
        live = self.sites[site]
        self.ops(
            "device",
            "add",
            site,
            device_id,
            "--lane",
            lane,
            "--out",
            str(self.workdir / "ops-bundles" / device_id),
            "--camera",
            "keyboard",
            "--gpio",
            "simulated",
        )
        unit = DeviceProc(len(live.units), Path(), self.workdir, self.env, device_id=device_id)
        self._deploy_unit(live, unit)
        live.units[device_id] = unit
        return unit.start()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "TwoSites":
        self.central.start()
        for live in self.sites.values():
            live.broker.start()
            live.gateway.start(wait=False)
        self.publish()  # the first signed registries: the gateways follow the central from now
        for live in self.sites.values():
            for unit in live.units.values():
                unit.start()
        for site, live in self.sites.items():
            for dev in live.units:
                self.wait_online(site, dev)
        return self

    def close(self) -> None:
        for live in self.sites.values():
            for unit in live.units.values():
                with contextlib.suppress(Exception):
                    unit.kill()
        services = [s for live in self.sites.values() for s in (live.gateway, live.broker)]
        kill_services([*services, self.central])

    # -- what the sites show --------------------------------------------------------------------

    def wait_online(self, site: str, dev: str, timeout: float = 60.0) -> None:
        live, unit = self.sites[site], self.sites[site].units[dev]

        def online() -> bool:
            rows = live.query("SELECT status, status_ms FROM devices WHERE dev = ?", (dev,))
            return bool(rows) and rows[0][0] == "online" and (rows[0][1] or 0) >= unit.started_ms

        wait_until(online, timeout, message=f"{dev} online at {site}")

    def scan(self, site: str, dev: str, text: str, timeout: float = 30.0) -> tuple[str, str]:
        """Type `text` into the unit; (verdict, reason) of the event it committed, as the site
        gateway stored it."""
        live, unit = self.sites[site], self.sites[site].units[dev]
        before = outbox_state(unit.outbox)["last_seq"]
        unit.feed([text])
        seq = wait_until(
            lambda: (s := outbox_state(unit.outbox)["last_seq"]) > before and s,
            timeout,
            message=f"{dev} to decide a scan",
        )
        row = wait_until(
            lambda: live.query(
                "SELECT verdict, reason FROM events WHERE dev = ? AND seq = ?", (dev, seq)
            ),
            timeout,
            message=f"{dev} seq {seq} at the {site} gateway",
        )
        return row[0][0], row[0][1]

    def login_works(self, site: str, dev: str, home_site: str | None = None) -> bool:
        """A fresh MQTT login at `site`'s broker with the unit's own password (its bundle's,
        deployed at `home_site`, by default the same site), over TLS."""
        live = self.sites[site]
        folder = self.workdir / (home_site or site) / dev
        password = (folder / "mqtt.password").read_text().strip()
        result: dict[str, Any] = {}
        done = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"{dev}-probe", protocol=mqtt.MQTTv5
        )
        client.tls_set(
            ca_certs=str(live.gateway_dir / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT
        )
        client.username_pw_set(dev, password)

        def on_connect(_c, _u, _f, reason_code, _p) -> None:
            result["rc"] = reason_code
            done.set()

        client.on_connect = on_connect
        client.on_disconnect = lambda *_: done.set()
        try:
            client.connect("127.0.0.1", live.broker_port, keepalive=5)
            client.loop_start()
            done.wait(10)
        finally:
            client.disconnect()
            client.loop_stop()
        rc = result.get("rc")
        return rc is not None and not rc.is_failure

    def relay_event(self, site: str, dev: str) -> int:
        """The unit's next event, signed with its own key, sent through the relay login.
        Returns its seq."""
        live, unit = self.sites[site], self.sites[site].units[dev]
        seq = outbox_state(unit.outbox)["last_seq"] + 1
        raw = signed_scan(self.workdir / site / dev / "device.key", dev, site, seq, ep=1)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=RELAY, protocol=mqtt.MQTTv5
        )
        client.tls_set(ca_certs=str(live.gateway_dir / "ca.crt"))
        client.username_pw_set(RELAY, live.relay_password)
        client.connect("127.0.0.1", live.broker_port)
        client.loop_start()
        try:
            client.publish(event_topic(site, dev), raw, qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        return seq
