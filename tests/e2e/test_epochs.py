"""Outbox epochs and signed acks through a real site (issue #13, item 3): the provisioned
Mosquitto (TLS, dynamic-security logins and ACLs), a real gateway process, the centre, and a
unit as a real `chot device run` process.

- A unit re-imaged with its bundle (fresh outbox, new epoch) while the gateway still holds the
  old epoch's state loses none of its next 120 decisions, and the centre's per-(dev, ep)
  accounting (`chot central stats --json`) proves both epochs complete.
- Acks forged with a stolen gateway MQTT login (the broker lets it publish on every ack topic
  of the site) delete nothing from the unit's outbox: unsigned JSON, signed by another key,
  the right key for another epoch or device, the right key and epoch naming seqs not sent.
"""

import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from chot.system import GATEWAY, chot_argv
from device.config import load_signing_key
from harness.e2e.device_proc import DeviceProc
from harness.e2e.passes import Scan, make_scans, pass_ref_of
from harness.e2e.site import SITE, E2ESite
from harness.polling import wait_until
from protocol import topics
from protocol.ack import Ack, SeqRange, sign_ack
from provisioning import dynsec

ROOT = Path(__file__).resolve().parents[2]
STOLEN = "stolen-gw"  # a second login with the gateway's role: a stolen gateway login
FIRST, REIMAGED, HELD, LATER = 40, 120, 10, 5


class EpochSite:
    """One unit, its prepared passes and the stolen login's password."""

    def __init__(self, site: E2ESite, scans: list[Scan], stolen_password: str) -> None:
        self.site = site
        self.unit: DeviceProc = site.devices[0]
        self.scans = scans
        self.taken = 0
        self.stolen_password = stolen_password

    def take(self, n: int) -> list[Scan]:
        out = self.scans[self.taken : self.taken + n]
        assert len(out) == n, "scan pool exhausted"
        self.taken += n
        return out


@pytest.fixture(scope="module")
def epoch_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpochSite]:
    site = E2ESite(tmp_path_factory.mktemp("epochs"), devices=1)
    try:
        scans = make_scans(site.site, [FIRST + REIMAGED + HELD + LATER], now=site.now)[0]
        password = os.urandom(12).hex()
        add_stolen_gateway_login(site, password)
        site.start()
        yield EpochSite(site, scans, password)
    finally:
        site.close()


def add_stolen_gateway_login(site: E2ESite, password: str) -> None:
    """The broker's starting dynsec file gets a second client with the gateway role: what an
    attacker holding a copy of a gateway's MQTT credentials can do, without its signing key."""
    path = site.site.broker_conf.parent / "data" / dynsec.CONFIG_NAME
    document = dynsec.read_document(path)
    assert document is not None, f"no {path}"
    document["clients"].append(dynsec.client(STOLEN, password, [dynsec.GATEWAY_ROLE]))
    dynsec.write_document(path, document)


# -- reading the unit and the centre ---------------------------------------------------------


def outbox_epoch(unit: DeviceProc) -> int:
    def read() -> int | None:
        db = sqlite3.connect(f"file:{unit.outbox}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()
        return row[0] if row else None

    return wait_until(
        lambda: unit.outbox.exists() and read(), 20, message="the unit's outbox epoch"
    )


def gateway_heartbeat(site: E2ESite, dev: str) -> dict[str, Any]:
    """The unit's newest heartbeat as the gateway stored it (its own view of its outbox:
    `seq` decided, `outbox_depth` not acknowledged, `ep` its epoch)."""
    rows = site.gateway_query("SELECT heartbeat FROM devices WHERE dev = ?", (dev,))
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def wait_all_acked(site: E2ESite, unit: DeviceProc, ep: int, seq: int, timeout: float = 40):
    """The unit reports `seq` decisions in epoch `ep` and nothing left unacknowledged."""

    def done() -> dict[str, Any] | None:
        beat = gateway_heartbeat(site, unit.id)
        ok = beat.get("ep") == ep and beat.get("seq") == seq and beat.get("outbox_depth") == 0
        return beat if ok else None

    return wait_until(
        done,
        timeout,
        interval=0.2,
        message=lambda: (
            f"{unit.id} epoch {ep}: {seq} decided, all acked "
            f"(last heartbeat {gateway_heartbeat(site, unit.id)})"
        ),
    )


def central_events(site: E2ESite, dev: str) -> list[dict[str, Any]]:
    return site.central_fetch(
        "SELECT ep, seq, typ, ref, verdict, reason FROM events "
        f"WHERE dev = '{dev}' ORDER BY ep, seq"
    )


def central_stats(site: E2ESite) -> dict[str, Any]:
    """`chot central stats --json`, as an operator would run it."""
    out = subprocess.run(
        chot_argv("central", "stats", "--store", site.site.central_url, "--json"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_epoch_at_centre(site: E2ESite, dev: str, ep: int, last_seq: int) -> list[dict]:
    """Every event 1..last_seq of (dev, ep) at the centre, each once."""

    def done() -> list[dict] | None:
        rows = [r for r in central_events(site, dev) if int(r["ep"]) == ep]
        return rows if len(rows) >= last_seq else None

    rows = wait_until(done, 30, interval=0.3, message=f"{dev} epoch {ep} at the centre")
    assert [r["seq"] for r in rows] == list(range(1, last_seq + 1))
    return rows


def assert_decided_as_fed(rows: list[dict], scans: list[Scan]) -> None:
    """The scan events, in seq order, are the passes fed, with the expected verdicts."""
    decided = [r for r in rows if r["typ"] == "scan"]
    assert len(decided) == len(scans)
    for scan, row in zip(scans, decided, strict=True):
        got = None if row["ref"] is None else bytes(row["ref"])
        assert got == pass_ref_of(scan.text), f"seq {row['seq']}: not the pass fed there"
        assert (row["verdict"], row["reason"]) == (scan.verdict, scan.reason), row["seq"]


def scan_and_wait(site: E2ESite, unit: DeviceProc, scans: list[Scan], ep: int) -> int:
    """Type the passes in; returns the unit's last seq once it has decided them all and the
    gateway has acknowledged everything."""
    beat = gateway_heartbeat(site, unit.id)
    before = beat.get("seq", 0) if beat.get("ep") == ep else 0
    unit.feed([s.text for s in scans])
    unit.join_feed(30)
    beat = wait_all_acked(site, unit, ep, before + len(scans))
    return beat["seq"]


def unit_reports(site: E2ESite, unit: DeviceProc, ep: int) -> bool:
    return gateway_heartbeat(site, unit.id).get("ep") == ep


# -- (a) + (c): a re-imaged unit ----------------------------------------------------------------


def test_reimaged_unit_loses_nothing_and_the_centre_proves_each_epoch(epoch_site) -> None:
    site, unit = epoch_site.site, epoch_site.unit
    old_ep = outbox_epoch(unit)
    wait_until(lambda: unit_reports(site, unit, old_ep), 20, message="a first heartbeat")
    first = epoch_site.take(FIRST)
    old_last = scan_and_wait(site, unit, first, old_ep)
    assert_decided_as_fed(wait_epoch_at_centre(site, unit.id, old_ep, old_last), first)

    # re-imaged: the same bundle, the unit's state (outbox, recent passes) gone
    unit.stop()
    shutil.rmtree(unit.config.parent / "state")
    held = site.gateway_query(
        "SELECT contiguous FROM epochs WHERE dev = ? AND ep = ?", (unit.id, old_ep)
    )
    assert held == [(old_last,)], "the gateway must still hold the old epoch's state"
    unit.start()
    new_ep = outbox_epoch(unit)
    assert new_ep != old_ep
    site.wait_online()
    wait_until(lambda: unit_reports(site, unit, new_ep), 20, message="the new epoch announced")
    reimaged = epoch_site.take(REIMAGED)
    new_last = scan_and_wait(site, unit, reimaged, new_ep)
    assert new_last >= REIMAGED
    assert_decided_as_fed(wait_epoch_at_centre(site, unit.id, new_ep, new_last), reimaged)
    held = site.gateway_query(
        "SELECT ep, contiguous, highest FROM epochs WHERE dev = ? ORDER BY ep", (unit.id,)
    )
    assert sorted(held) == sorted([(old_ep, old_last, old_last), (new_ep, new_last, new_last)])

    # (c) the centre's accounting per (dev, ep): both epochs complete, nothing twice
    stats = central_stats(site)
    assert stats["duplicates"] == 0
    device = stats["by_device"][unit.id]
    epochs = {int(ep): figures for ep, figures in device["epochs"].items()}
    assert epochs == {
        old_ep: {"count": old_last, "min_seq": 1, "max_seq": old_last, "missing": 0},
        new_ep: {"count": new_last, "min_seq": 1, "max_seq": new_last, "missing": 0},
    }
    assert device["count"] == old_last + new_last and device["missing"] == 0


# -- (b): forged acks ------------------------------------------------------------------------


class StolenLogin:
    """A paho client with the stolen gateway login: publishes acks and reads the unit's
    heartbeats (the gateway role may read the whole site tree)."""

    def __init__(self, site: E2ESite, password: str, dev: str) -> None:
        self.heartbeats: list[tuple[float, dict]] = []
        self.puback: dict[int, int] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=STOLEN, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(STOLEN, password)
        self.client.tls_set(
            ca_certs=str(site.site.broker_conf.parent / "ca.crt"),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.heartbeat_topic = topics.device_topic(SITE, dev, "heartbeat")
        self.client.connect("127.0.0.1", site.site.broker_port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the stolen gateway login must connect"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.heartbeat_topic, qos=0)
            self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.heartbeats.append((time.monotonic(), json.loads(message.payload)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.puback[mid] = reason_code.value

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish QoS 1 and return the broker's PUBACK reason code (0: accepted)."""
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: self._answered(info.mid), 10, message="the broker's PUBACK")
        with self._lock:
            return self.puback[info.mid]

    def _answered(self, mid: int) -> bool:
        with self._lock:
            return mid in self.puback

    def heartbeat_after(self, t: float) -> dict | None:
        with self._lock:
            later = [beat for at, beat in self.heartbeats if at > t]
        return later[-1] if later else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refusals(unit: DeviceProc) -> list[str]:
    return [ln for ln in unit.log_path.read_text().splitlines() if "ack refused" in ln]


def test_forged_acks_on_the_ack_topic_delete_nothing(epoch_site) -> None:
    site, unit = epoch_site.site, epoch_site.unit
    ep = outbox_epoch(unit)
    gateway_key = load_signing_key(site.site.gateway_config.parent / "gateway.key")
    beat = wait_until(
        lambda: (
            (b := gateway_heartbeat(site, unit.id)).get("ep") == ep
            and b.get("outbox_depth") == 0
            and b
        ),
        30,
        message="the unit's heartbeat: everything acknowledged so far",
    )
    base = beat["seq"]

    # the real gateway is away: nothing is acknowledged, the unit's outbox fills
    site.services["gateway"].stop()
    attacker = StolenLogin(site, epoch_site.stolen_password, unit.id)
    try:
        unit.feed([s.text for s in epoch_site.take(HELD)])
        unit.join_feed(30)
        last = base + HELD

        def holding(seq: int, depth: int, after: float = 0.0):
            beat = attacker.heartbeat_after(after)
            ok = beat and beat["seq"] == seq and beat["outbox_depth"] == depth
            return beat if ok else None

        wait_until(lambda: holding(last, HELD), 20, message=f"{HELD} events held")
        every = (1, last)  # an ack naming every seq this epoch has, if it were believed
        stranger = SigningKey.generate()

        def signed(key: SigningKey, *, dev: str = unit.id, ep: int = ep, rng=every) -> bytes:
            ack = Ack(GATEWAY, dev, ep, 0, (SeqRange(*rng),), int(time.time() * 1000), True)
            return sign_ack(ack, key)

        other_ep = ep % (2**53 - 1) + 1
        forged = {
            "unsigned": json.dumps({"seq": last}).encode(),  # the v1 JSON ack
            "wrong_key": signed(stranger),
            "wrong_epoch": signed(gateway_key, ep=other_ep),  # e.g. the old epoch's ack
            "wrong_device": signed(gateway_key, dev="demo-lane9"),
            "not_sent": signed(gateway_key, rng=(last + 1, last + 100)),
        }
        refused_before = len(refusals(unit))
        for payload in forged.values():
            assert attacker.publish(topics.ack_topic(SITE, unit.id), payload) == 0, (
                "the broker must let a gateway login publish acks (else this proves nothing)"
            )

        def all_refused() -> list[str] | None:
            lines = refusals(unit)[refused_before:]
            seen = [reason for reason in forged if any(f": {reason}" in ln for ln in lines)]
            return lines if len(seen) == len(forged) else None

        wait_until(all_refused, 20, message=lambda: f"refusals: {refusals(unit)[-5:]}")
        refused_at = time.monotonic()
        beat = wait_until(
            lambda: attacker.heartbeat_after(refused_at), 10, message="a later heartbeat"
        )
        assert (beat["seq"], beat["outbox_depth"], beat["ep"]) == (last, HELD, ep)

        # the not_sent forgery named the seqs coming next: deciding them deletes nothing
        unit.feed([s.text for s in epoch_site.take(LATER)])
        unit.join_feed(30)
        wait_until(
            lambda: holding(last + LATER, HELD + LATER, refused_at),
            20,
            message=lambda: f"{HELD + LATER} held (last {attacker.heartbeat_after(0)})",
        )
    finally:
        attacker.close()

    # the gateway returns: everything held is delivered, acknowledged and at the centre
    site.start_gateway()
    wait_all_acked(site, unit, ep, last + LATER)
    wait_epoch_at_centre(site, unit.id, ep, last + LATER)
    device = central_stats(site)["by_device"][unit.id]
    epochs = {int(e): figures for e, figures in device["epochs"].items()}
    assert epochs[ep]["count"] == last + LATER and epochs[ep]["missing"] == 0
