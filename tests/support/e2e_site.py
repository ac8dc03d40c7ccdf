"""A whole chot site as real processes, for the end-to-end tests and the e2e benchmark.

Built on `chot.system.provision_site` (the ops tool provisions broker TLS + passwords + ACL,
devices, gateway, operator) and `site_services` (broker, central, gateway as child processes).
What the tests add here:

- scanner units run as `python -m chot device run` with the keyboard-wedge source, fed pass
  texts through a stdin pipe we keep open, so we know which text became which sequence number;
- `E2ESite.device_seq` reads a unit's committed sequence straight from its outbox database,
  the ground truth for "what the device had decided and committed" after a kill -9;
- `TcpProxy` sits between one unit and the broker so a test can cut that unit's network;
- the gateway's state dir can live on a small tmpfs so a test can fill its disk;
- `python -m tests.support.e2e_site device --config X --clock-file F` runs a unit whose wall
  clock offset and kernel sync state come from a small JSON file, so a test can jump the clock
  of a running unit (the app's own injection point: `DeviceApp(clock=ClockSource(...))`).

Everything is torn down by `close()`: process groups are killed, tmpfs unmounted.
"""

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from central.store import open_store
from chot.system import (
    HOUR,
    OPERATOR,
    SITE,
    ProvisionedSite,
    Service,
    _patch_toml,
    chot_argv,
    provision_site,
    site_services,
)
from protocol.pass_v1 import PassClaims, encode_pass

log = logging.getLogger(__name__)
__all__ = ["SITE", "DeviceProc", "E2ESite", "Scan", "TcpProxy", "make_scans", "wait_until"]
ROOT = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# --- the passes people hold up ---------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """One presentation and what the unit must decide for it (with a synced clock)."""

    text: str
    category: str  # valid, expired, forged, revoked, not_chot
    verdict: str
    reason: str


EXPECTED = {
    "valid": ("pass", "ok"),
    "expired": ("fail", "expired"),
    "forged": ("fail", "unknown_kid"),  # signed by an issuer nobody trusts
    "revoked": ("fail", "revoked"),
    "not_chot": ("fail", "not_chot"),
}


def make_scans(site: ProvisionedSite, per_device: list[int], *, now: int) -> list[list[Scan]]:
    """Distinct passes for each unit: mostly valid, every 10th one of the bad kinds. Revoked
    ones are added to a newly signed revocation list, installed before the units start."""
    home = site.home
    key = home.issuer_signing_key()
    stranger = SigningKey.generate()
    bad = ["expired", "forged", "revoked", "not_chot"]
    out: list[list[Scan]] = []
    revoked_refs: list[str] = []
    serial = 0
    for count in per_device:
        scans = []
        for i in range(count):
            serial += 1
            category = bad[(i // 10) % len(bad)] if i % 10 == 9 else "valid"
            doc = f"{serial:012d}"
            if category == "valid":
                text, _ = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 600, _key=key
                )
            elif category == "expired":
                text, _ = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 80 * HOUR, _key=key
                )
            elif category == "revoked":
                text, claims = home.issue_pass(
                    kind="declaration", doc_number=doc, now=now - 600, _key=key
                )
                revoked_refs.append(claims.pass_ref.hex())
            elif category == "forged":
                claims = PassClaims(
                    iss="VN-HN",
                    iat=now - 600,
                    exp=now + 72 * HOUR,
                    cti=os.urandom(16),
                    sub=os.urandom(16),
                    kind="declaration",
                )
                text = encode_pass(claims, stranger)
            else:
                text = f"https://example.vn/menu?table={serial}"
            scans.append(Scan(text, category, *EXPECTED[category]))
        out.append(scans)
    if revoked_refs:
        home.state.revoked_pass_refs = sorted({*home.state.revoked_pass_refs, *revoked_refs})
        home.save()
        home.sign_revocation_list(now=now)
        install_documents(site)
    return out


def install_documents(site: ProvisionedSite) -> None:
    """Copy the home's current trust and revocation lists into every bundle (as an ops team
    would before deploying) and into the gateway's documents folder."""
    folders = [cfg.parent for cfg in site.device_configs] + [
        site.gateway_config.parent / "documents"
    ]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trust.cose").write_bytes(site.home.trust_list_bytes())
        (folder / "revocations.cose").write_bytes(site.home.revocation_list_bytes())


# --- a unit's network: a cuttable TCP proxy --------------------------------------------------


class TcpProxy:
    """127.0.0.1:port -> 127.0.0.1:upstream, byte for byte (TLS passes through untouched).
    `cut()` drops every connection and refuses new ones until `restore()`."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # the cable is out: refuse
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            self.connections += 1
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


# --- scanner unit processes --------------------------------------------------------------------


class DeviceProc:
    """`chot device run` with stdin kept open: a keyboard-wedge reader we type into."""

    def __init__(self, index: int, config: Path, workdir: Path, env: dict[str, str]) -> None:
        self.index = index
        self.config = config
        self.id = f"demo-lane{index + 1}"
        self.env = env
        self.log_path = workdir / "logs" / f"{self.id}.log"
        self.clock_file: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._feeder: threading.Thread | None = None
        self._stop_feed = threading.Event()
        self.fed = 0  # lines written to the pipe by the current feeder

    @property
    def outbox(self) -> Path:
        return self.config.parent / "state" / "outbox.db"

    def start(self) -> "DeviceProc":
        if self.clock_file is not None:
            argv = [
                sys.executable,
                "-m",
                "tests.support.e2e_site",
                "device",
                "--config",
                str(self.config),
                "--clock-file",
                str(self.clock_file),
            ]
        else:
            argv = chot_argv("device", "run", "--config", str(self.config))
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=ROOT,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def feed(self, texts: list[str], rate: float | None = None) -> threading.Thread:
        """Type `texts` into the unit from a thread, `rate` lines a second (None: as fast as
        the unit reads them: the pipe blocks when it is full)."""
        self._stop_feed.clear()
        self.fed = 0
        proc = self.proc
        assert proc is not None and proc.stdin is not None

        def run() -> None:
            start = time.monotonic()
            try:
                for i, text in enumerate(texts):
                    if self._stop_feed.is_set():
                        return
                    if rate:
                        delay = start + i / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    proc.stdin.write(text.encode() + b"\n")
                    if rate:
                        proc.stdin.flush()
                    self.fed = i + 1
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the unit was killed: the test knows

        self._feeder = threading.Thread(target=run, name=f"feed-{self.id}", daemon=True)
        self._feeder.start()
        return self._feeder

    def join_feed(self, timeout: float) -> None:
        if self._feeder is not None:
            self._feeder.join(timeout)
            assert not self._feeder.is_alive(), f"{self.id}: feeding did not finish"

    def kill(self) -> None:
        """kill -9 the unit (a power cut): no clean shutdown, stdin pipe lost."""
        self._stop_feed.set()
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._close_stdin()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the service's clean exit."""
        self._stop_feed.set()
        if self.proc is None:
            return None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._close_stdin()
        return self.proc.returncode

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()


def outbox_state(path: Path) -> dict[str, int]:
    """last_seq (committed decisions), acked_seq and depth, read from a unit's outbox.db."""
    if not path.exists():
        return {"last_seq": 0, "acked_seq": 0, "depth": 0}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        depth = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return {"last_seq": 0, "acked_seq": 0, "depth": 0}
    finally:
        db.close()
    return {
        "last_seq": meta.get("last_seq", 0),
        "acked_seq": meta.get("acked_seq", 0),
        "depth": depth,
    }


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


# --- the site ------------------------------------------------------------------------------


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
            _patch_toml(
                config,
                device={"offline_after_s": 2.0},
                camera={"source": "keyboard"},
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
        _patch_toml(
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
            lambda: self._broker_log_since(marker, "as chot-gw-"),
            30,
            "the gateway to connect to the broker",
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
        ids = {d.id for d in self.devices if d.running}
        wait_until(lambda: ids <= self.online_devices(), timeout, f"units {sorted(ids)} online")

    def close(self) -> None:
        for dev in self.devices:
            with contextlib.suppress(Exception):
                dev.kill()
        for name in ("gateway", "central", "broker"):
            service = self.services[name]
            with contextlib.suppress(Exception):
                if service.running:
                    assert service.proc is not None
                    os.killpg(service.proc.pid, signal.SIGKILL)
                    service.proc.wait(5)
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
        if not self.gateway_db.exists():
            return []
        db = sqlite3.connect(f"file:{self.gateway_db}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

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
        base = f"http://127.0.0.1:{self.site.web_port}"
        with httpx.Client(base_url=base, timeout=10) as web:
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
        out = subprocess.run(
            chot_argv("gateway", "status", "--config", str(self.site.gateway_config), "--json"),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

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

        return wait_until(done, timeout, "every committed decision at the centre", every=0.5)

    def check_exactly_once(self) -> dict[str, list[dict[str, Any]]]:
        """The central store's invariants: no eid twice, no (dev, seq) twice, seq 1..N
        contiguous per unit with N = the unit's committed sequence. Returns rows by unit."""
        dup_eid = self.central_fetch("SELECT COUNT(*) - COUNT(DISTINCT eid) AS n FROM events")
        assert int(dup_eid[0]["n"]) == 0, "an event id is stored twice"
        dup_seq = self.central_fetch(
            "SELECT dev, seq, COUNT(*) AS n FROM events GROUP BY dev, seq HAVING COUNT(*) > 1"
        )
        assert dup_seq == [], f"(dev, seq) stored twice: {dup_seq[:5]}"
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


def pass_ref_of(text: str) -> bytes | None:
    """The pass reference a unit reports for a text (None when it is not a chot pass)."""
    from protocol.pass_v1 import decode_pass
    from protocol.reasons import ProtocolError

    try:
        return decode_pass(text).claims.pass_ref
    except ProtocolError:
        return None


# --- a unit with a controllable clock (run in its own process) --------------------------------


def run_device_with_clock(config: Path, clock_file: Path) -> None:
    """A scanner unit whose wall-clock offset and kernel sync state follow `clock_file`
    (JSON {"offset_s": float, "state": "synced"|"bounded"|"unknown"}), re-read every 0.2 s."""
    from device.app import DeviceApp
    from device.clock_source import ClockSource
    from device.config import load_config
    from protocol.clock import ClockState

    setting = {"offset_s": 0.0, "state": "synced"}

    def poll() -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                setting.update(json.loads(clock_file.read_text()))
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    clock = ClockSource(
        probe=lambda: ClockState(setting["state"]),
        wall=lambda: time.time() + float(setting["offset_s"]),
        probe_interval_s=0.2,
    )
    DeviceApp(load_config(config), clock=clock).run()


def set_clock(clock_file: Path, *, offset_s: float = 0.0, state: str = "synced") -> None:
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"offset_s": offset_s, "state": state}))
    tmp.replace(clock_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_site")
    sub = parser.add_subparsers(dest="cmd", required=True)
    dev = sub.add_parser("device")
    dev.add_argument("--config", type=Path, required=True)
    dev.add_argument("--clock-file", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_device_with_clock(args.config, args.clock_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
