"""An e2e site: provisioned by the ops tool (`chot.system.provision_site`: broker TLS +
passwords + ACL, devices, gateway, operator), tuned for fast recovery, run as real processes
(`site_services`), and read back from the gateway's and the centre's stores.

What the site adds for tests: units behind a cuttable `TcpProxy`, the gateway's state dir on a
small tmpfs so a test can fill its disk, and the central store's invariants
(`check_exactly_once`). Everything is torn down by `close()`: process groups are killed, tmpfs
unmounted.
"""

import contextlib
import os
import re
import ssl
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from central.backends import open_store
from chot.system import (
    GATEWAY,
    OPERATOR,
    SITE,
    Service,
    chot_argv,
    provision_site,
    site_services,
)
from harness.config_files import edit_toml
from harness.e2e.device_proc import DeviceProc, outbox_state
from harness.e2e.proxy import TcpProxy
from harness.e2e.services import kill_services, query_gateway_store
from harness.gateway_cli import gateway_status_json
from harness.polling import wait_until

__all__ = ["SITE", "E2ESite"]
ROOT = Path(__file__).resolve().parents[2]


def mount_tmpfs(folder: Path, size_mb: int) -> Path:
    """A small filesystem of its own for `folder`, so a test can fill it (needs root, as the
    test machines and CI run; a clear error otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "chot-e2e-gw", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs on {folder} (root needed): {done.stderr}")
    return folder


class E2ESite:
    """Provision, tune for fast recovery, run and tear down one site."""

    def __init__(
        self,
        workdir: Path,
        *,
        devices: int = 4,
        central_store: str | None = None,
        gateway_tmpfs_mb: int | None = None,
        proxied: Iterable[int] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.site = provision_site(self.workdir, devices=devices, central_store=central_store)
        self.now = int(time.time())
        self.services: dict[str, Service] = site_services(self.site)
        self.proxies: dict[int, TcpProxy] = {}
        self.mounted: Path | None = None
        self.devices: list[DeviceProc] = []
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHOT_CLOCK_STATE": "synced"}
        # this machine has no NTP sync: the kernel says "unknown", a deployed Pi says "synced"
        for i, config in enumerate(self.site.device_configs):
            port = self.site.broker_port
            if i in set(proxied):
                self.proxies[i] = TcpProxy(self.site.broker_port)
                port = self.proxies[i].port
            edit_toml(
                config,
                device={"offline_after_s": 2.0},
                camera={"source": "keyboard"},
                # acks reach the outbox file within a second, where the tests read them
                outbox={"settle_s": 1.0},
                mqtt={
                    "port": port,
                    "heartbeat_s": 1.0,
                    "keepalive_s": 5,
                    "reconnect_max_s": 2.0,
                    "ack_timeout_s": 3.0,
                },
            )
            self.devices.append(DeviceProc(i, config, self.workdir, env))
        gw_state = self.site.gateway_config.parent / "state"
        if gateway_tmpfs_mb:
            self.mounted = mount_tmpfs(gw_state, gateway_tmpfs_mb)
        edit_toml(
            self.site.gateway_config,
            mqtt={"keepalive_s": 5},
            central={
                "backoff_initial_s": 0.2,
                "backoff_max_s": 1.0,
                "idle_poll_s": 0.2,
                "connect_timeout_s": 2.0,
                "read_timeout_s": 10.0,
            },
            store={"disk_alert_free_bytes": 2_000_000, "maintain_interval_s": 2},
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, devices: bool = True) -> "E2ESite":
        self.services["broker"].start()
        self.services["central"].start()
        self.start_gateway()
        if devices:
            for dev in self.devices:
                dev.start()
            self.wait_online()
        return self

    def start_gateway(self) -> None:
        """Start the gateway and wait for its MQTT session (its web port may not exist yet)."""
        marker = self._broker_log_mark()
        self.services["gateway"].start(wait=False)
        wait_until(
            # The broker names a client by its login (use_username_as_clientid)
            lambda: self._broker_log_since(marker, f" as {GATEWAY} "),
            30,
            message="the gateway to connect to the broker",
        )

    def _broker_log(self) -> Path:
        return self.site.broker_conf.parent / "mosquitto.log"

    def _broker_log_mark(self) -> int:
        path = self._broker_log()
        return path.stat().st_size if path.exists() else 0

    def _broker_log_since(self, mark: int, needle: str) -> bool:
        path = self._broker_log()
        if not path.exists():
            return False
        with path.open("rb") as f:
            f.seek(mark)
            return needle.encode() in f.read()

    def restart_broker(self, kill: bool = True) -> None:
        broker = self.services["broker"]
        broker.kill() if kill else broker.stop()
        broker.start()

    def wait_online(self, timeout: float = 30.0) -> None:
        """Every running unit online, as announced by its current process: after a restart
        the gateway still shows the previous process's "online" until it hears "stopped"."""
        running = [d for d in self.devices if d.running]

        def fresh_online() -> bool:
            rows = self.gateway_query("SELECT dev, status, status_ms FROM devices")
            seen = {dev: (status, ms or 0) for dev, status, ms in rows}
            for d in running:
                status, received_ms = seen.get(d.id, ("", 0))
                if status != "online" or received_ms < d.started_ms:
                    return False
            return True

        wait_until(
            fresh_online,
            timeout,
            message=lambda: (
                f"units {[d.id for d in running]} online (now: {self.online_devices()})"
            ),
        )

    def close(self) -> None:
        for dev in self.devices:
            with contextlib.suppress(Exception):
                dev.kill()
        kill_services(self.services[name] for name in ("gateway", "central", "broker"))
        for proxy in self.proxies.values():
            proxy.close()
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], check=False, capture_output=True)
            self.mounted = None

    # -- what the gateway knows -----------------------------------------------------------------

    @property
    def gateway_db(self) -> Path:
        return self.site.gateway_config.parent / "state" / "gateway.db"

    def gateway_query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return query_gateway_store(self.gateway_db, sql, params)

    def online_devices(self) -> set[str]:
        rows = self.gateway_query("SELECT dev FROM devices WHERE status = 'online'")
        return {r[0] for r in rows}

    def device_status(self, dev: str) -> str | None:
        rows = self.gateway_query("SELECT status FROM devices WHERE dev = ?", (dev,))
        return rows[0][0] if rows else None

    def status_page_devices(self) -> dict[str, dict[str, Any]]:
        """The scanner table of the operators' status page, by device id."""
        return {row["device"]: row for row in self.status_page("/api/devices")}

    def status_page(self, path: str = "/api/status") -> Any:
        """What the operators' status page shows, read as a gate operator would: log in with
        the provisioned operator account, then the page's own JSON."""
        trust = ssl.create_default_context(cafile=self.site.web_ca)
        with httpx.Client(base_url=self.site.web_url, timeout=10, verify=trust) as web:
            page = web.get("/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token, "no CSRF token on the login page"
            answer = web.post(
                "/login",
                data={
                    "user": OPERATOR,
                    "csrf": token.group(1),
                    "password": self.site.operator_password,
                },
            )
            assert answer.status_code in (200, 303), answer.status_code
            shown = web.get(path)
            shown.raise_for_status()
            return shown.json()

    def gateway_status(self) -> dict[str, Any]:
        """`chot gateway status --config X --json`, as an operator would run it."""
        return gateway_status_json(self.site.gateway_config, cli=chot_argv())

    # -- what the centre holds ------------------------------------------------------------------

    def central_fetch(self, sql: str) -> list[dict[str, Any]]:
        store = open_store(self.site.central_url)
        try:
            return store.fetch(sql)
        except Exception:  # the schema is created by the service at its first start
            return []
        finally:
            store.close()

    def central_scans(self) -> dict[str, int]:
        rows = self.central_fetch(
            "SELECT dev, COUNT(*) AS n FROM events WHERE typ = 'scan' GROUP BY dev"
        )
        return {r["dev"]: int(r["n"]) for r in rows}

    def device_seq(self, dev: DeviceProc) -> int:
        return outbox_state(dev.outbox)["last_seq"]

    def wait_at_centre(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until every committed decision of every unit is in the central store."""

        def done() -> dict[str, int] | None:
            want = {d.id: self.device_seq(d) for d in self.devices}
            have = self.central_scans()
            return have if all(have.get(k, 0) >= v for k, v in want.items()) else None

        return wait_until(
            done, timeout, interval=0.5, message="every committed decision at the centre"
        )

    def check_exactly_once(self) -> dict[str, list[dict[str, Any]]]:
        """The central store's invariants: no eid twice, no (dev, ep, seq) twice, seq 1..N
        contiguous per unit with N = the unit's committed sequence (units keep one outbox epoch
        here; tests/e2e/test_epochs.py checks a re-imaged unit per epoch). Returns rows by
        unit."""
        dup_eid = self.central_fetch("SELECT COUNT(*) - COUNT(DISTINCT eid) AS n FROM events")
        assert int(dup_eid[0]["n"]) == 0, "an event id is stored twice"
        dup_seq = self.central_fetch(
            "SELECT dev, ep, seq, COUNT(*) AS n FROM events GROUP BY dev, ep, seq "
            "HAVING COUNT(*) > 1"
        )
        assert dup_seq == [], f"(dev, ep, seq) stored twice: {dup_seq[:5]}"
        rows = self.central_fetch(
            "SELECT dev, seq, ref, verdict, reason, clock, t, received_at FROM events "
            "WHERE typ = 'scan' ORDER BY dev, seq"
        )
        by_dev: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_dev.setdefault(row["dev"], []).append(row)
        for dev in self.devices:
            seqs = [r["seq"] for r in by_dev.get(dev.id, [])]
            committed = self.device_seq(dev)
            assert seqs == list(range(1, committed + 1)), (
                f"{dev.id}: central holds {len(seqs)} events "
                f"(first missing {_first_missing(seqs)}), unit committed {committed}"
            )
        return by_dev


def _first_missing(seqs: list[int]) -> int | None:
    for expected, seq in enumerate(seqs, start=1):
        if seq != expected:
            return expected
    return None
