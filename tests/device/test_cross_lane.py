"""One pass, one entry per site: two real units, a real gateway, a real Mosquitto (ACL).

A pass accepted at lane 2 is ``duplicate_recent`` at lane 3 once the gateway's signed snapshot
arrived, and still after either unit restarts with no network at all (its on-disk recent set).
Cut off from the gateway both units let the same pass through (they never wait for the
network); the gateway flags the repeat afterwards on its status (``pass_repeats``, alert
``pass_repeated``). A snapshot signed by another key is refused and changes nothing.
"""

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from device.app import DeviceApp
from device.gpio import SimulatedBackend
from device.recent_passes import RecentPasses
from gateway.app import GatewayApp
from gateway.config import parse_config
from harness.device_config import GATEWAY_ID, GATEWAY_KEY
from harness.polling import wait_until
from protocol import topics
from protocol.reasons import Reason, Verdict
from protocol.recent import RecentRef, RecentSnapshot, sign_recent
from protocol.registry import Signer
from tests.support.device_pipeline import Pki, QueueSource, device_public_key, write_device
from tests.support.gateway_core import SITE, USERS, Site

LANES = {"hn01-lane2": "lane-2", "hn01-lane3": "lane-3"}
ACL = "user gw\ntopic readwrite chot/v1/#\n\n" + "\n".join(
    f"user {dev}\n"
    f"topic write chot/v1/{SITE}/dev/{dev}/event\n"
    f"topic write chot/v1/{SITE}/dev/{dev}/status\n"
    f"topic write chot/v1/{SITE}/dev/{dev}/heartbeat\n"
    f"topic read chot/v1/{SITE}/dev/{dev}/ack\n"
    f"topic read chot/v1/{SITE}/dev/{dev}/config\n"
    f"topic read chot/v1/{SITE}/trust\n"
    f"topic read chot/v1/{SITE}/revocations\n"
    f"topic read chot/v1/{SITE}/recent\n"
    for dev in LANES
)


@pytest.fixture
def lanes(tmp_path, mosquitto, monkeypatch):
    monkeypatch.setenv("CHOT_CLOCK_STATE", "synced")
    monkeypatch.delenv("CHOT_MQTT_PASSWORD", raising=False)
    broker = mosquitto(users={"gw": USERS["gw"]} | {d: f"{d}-pw" for d in LANES}, acl=ACL)
    site = Site(tmp_path / "gw", devices=0)
    pki = Pki()
    # the gateway the harness units pin (harness/device_config.py)
    key_file = tmp_path / "gw" / "hn01-gw.key"
    key_file.write_text(bytes(GATEWAY_KEY).hex())
    key_file.chmod(0o600)
    site.registry.add(Signer(GATEWAY_ID, SITE, "gateway", bytes(GATEWAY_KEY.verify_key)))
    configs = {}
    for dev, lane in LANES.items():
        folder = tmp_path / dev
        configs[dev] = write_device(
            folder,
            pki,
            port=broker.port,
            password=f"{dev}-pw",
            device={"id": dev, "lane": lane},
            mqtt={"username": dev},
        )
        site.registry.add(Signer(dev, SITE, "device", device_public_key(folder), lane))
    site.save_registry()
    config = site.config(broker, id=GATEWAY_ID, signing_key_file=str(key_file))
    config["policy"] = {"duplicate_window_s": 600}  # the site's window, not a fixed 1,800 s
    gateways = [GatewayApp(parse_config(config)).start()]
    assert gateways[0].ready.wait(10)

    def restart() -> GatewayApp:
        gateways[-1].stop()
        gateways.append(GatewayApp(parse_config(config)).start())
        assert gateways[-1].ready.wait(10)
        return gateways[-1]

    yield broker, pki, configs, gateways[0], restart
    for gateway in gateways:
        gateway.stop()


def unit(config, *, connect: bool = True) -> DeviceApp:
    return DeviceApp(config, source=QueueSource(), backend=SimulatedBackend(), connect=connect)


def test_one_pass_one_entry_across_lanes_and_restarts(lanes):
    _broker, pki, configs, gateway, _restart = lanes
    lane2, lane3 = unit(configs["hn01-lane2"]), unit(configs["hn01-lane3"])
    try:
        assert wait_until(lambda: lane2.uplink.connected and lane3.uplink.connected, 10)
        text = pki.make_pass(7)
        first = lane2.handle_text(text)
        assert first.verdict is Verdict.PASS
        # the gateway commits lane 2's event and shares the reference with the site
        assert wait_until(lambda: lane3.decider.recent.accepted_at(first.pass_ref), 10)
        second = lane3.handle_text(text)
        assert (second.verdict, second.reason) == (Verdict.FAIL, Reason.DUPLICATE_RECENT)
        other = lane3.handle_text(pki.make_pass(8))  # another person is let through
        assert other.verdict is Verdict.PASS
        assert wait_until(lambda: gateway.ingest.totals["stored"] >= 3, 10)
        assert gateway.health()["pass_repeats"] == []  # the duplicate was refused, not let in
    finally:
        lane2.close()
        lane3.close()

    # restarts with no network at all: each unit remembers from its own disk
    for dev in LANES:
        again = unit(configs[dev], connect=False)
        try:
            decision = again.handle_text(text)
            assert decision.reason is Reason.DUPLICATE_RECENT, dev
        finally:
            again.close()


def test_units_cut_off_decide_alone_and_the_gateway_flags_the_repeat(lanes):
    _broker, pki, configs, gateway, _restart = lanes
    text = pki.make_pass(21)
    lane2 = unit(configs["hn01-lane2"], connect=False)
    lane3 = unit(configs["hn01-lane3"], connect=False)
    try:
        # no gateway: both decide at once from what they hold, and both let the pass through
        assert lane2.handle_text(text).verdict is Verdict.PASS
        assert lane3.handle_text(text).verdict is Verdict.PASS
        lane2.start_uplink()
        lane3.start_uplink()

        def flagged() -> list[dict]:
            return [r for r in gateway.health()["pass_repeats"] if r["cross_lane"]]

        assert wait_until(flagged, 15)
        repeat = flagged()[0]
        assert {repeat["first_device"], repeat["device"]} == set(LANES)
        assert {repeat["first_lane"], repeat["lane"]} == {"lane-2", "lane-3"}
        assert "pass_repeated" in gateway.health()["alerts"]
        # once reconnected, a third presentation is a duplicate at either lane
        assert lane2.handle_text(text).reason is Reason.DUPLICATE_RECENT
    finally:
        lane2.close()
        lane3.close()


def test_a_new_unit_gets_passes_accepted_before_a_gateway_restart(lanes):
    """The window is the site's [policy] duplicate_window_s; a restarted gateway rebuilds its
    recent set from its store and republishes it, so a brand-new unit (empty disk) refuses a
    pass another lane let through before the restart, even with the broker's retained copy
    gone (a broker restart loses it too)."""
    broker, pki, configs, gateway, restart = lanes
    assert gateway.recent_passes.window_s == 600
    lane2 = unit(configs["hn01-lane2"])
    try:
        assert wait_until(lambda: lane2.uplink.connected, 10)
        text = pki.make_pass(31)
        first = lane2.handle_text(text)
        assert first.verdict is Verdict.PASS
        assert wait_until(lambda: len(gateway.recent_passes) == 1, 10)
    finally:
        lane2.close()
    wipe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wipe")
    wipe.username_pw_set("gw", USERS["gw"])
    wipe.connect(broker.host, broker.port)
    wipe.loop_start()
    wipe.publish(topics.recent_topic(SITE), b"", qos=1, retain=True).wait_for_publish(5)
    wipe.loop_stop()
    wipe.disconnect()
    again = restart()
    assert len(again.recent_passes) == 1 and again.recent_passes.window_s == 600
    fresh = unit(configs["hn01-lane3"])  # never ran: nothing on its disk
    try:
        assert wait_until(lambda: fresh.uplink.connected, 10)
        ref = first.pass_ref
        assert wait_until(lambda: fresh.decider.recent.accepted_at(ref) is not None, 10)
        assert fresh.handle_text(text).reason is Reason.DUPLICATE_RECENT
    finally:
        fresh.close()


def test_a_snapshot_not_signed_by_the_pinned_gateway_is_refused(lanes):
    _broker, _pki, configs, _gateway, _restart = lanes
    lane2 = unit(configs["hn01-lane2"], connect=False)
    try:
        ref = bytes(range(16))
        forged = sign_recent(
            RecentSnapshot(GATEWAY_ID, SITE, 1_700_000_000_000, (RecentRef(ref, 0),)),
            SigningKey.generate(),  # right gateway name, wrong key
        )
        lane2.on_document("recent", forged)
        assert lane2.refused["recent"] == "wrong_key"
        assert lane2.decider.recent.accepted_at(ref) is None
        assert topics.recent_topic(SITE) == f"chot/v1/{SITE}/recent"
    finally:
        lane2.close()


def test_recent_set_is_bounded_expires_and_survives_a_reboot(tmp_path):
    clock = {"mono": 100.0, "wall": 1_700_000_000_000}

    def make(boot: str, **options) -> RecentPasses:
        return RecentPasses(
            tmp_path / "recent.db",
            window_s=60,
            monotonic=lambda: clock["mono"],
            wall_ms=lambda: clock["wall"],
            boot_id=boot,
            **options,
        )

    def tick(seconds: float) -> None:
        clock["mono"] += seconds
        clock["wall"] += int(seconds * 1000)

    recent = make("boot-a", max_entries=3)
    for i in range(5):  # accepted at 100, 101, ... 104
        recent.note_accepted(bytes([i]) * 16)
        tick(1)
    assert len(recent) == 3 and recent.accepted_at(bytes([1]) * 16) is None  # bounded
    # the gateway's entry, accepted 2.5 s ago, lands in order; the oldest (102) goes
    assert recent.merge([(b"\x09" * 16, 2.5)]) == 1
    assert recent.accepted_at(b"\x09" * 16) == 102.5
    assert recent.accepted_at(bytes([2]) * 16) is None and len(recent) == 3
    assert recent.merge([(b"\x09" * 16, 10.0)]) == 0  # an older sighting changes nothing
    recent.close()

    # the same boot (a process restart): the monotonic clock carried on, the window is exact
    tick(10)
    same = make("boot-a")
    assert same.accepted_at(bytes([4]) * 16) == 104.0
    same.close()
    # a reboot (monotonic from 0): measured by the wall clock, 21 s after acceptance
    clock["mono"] = 5.0
    clock["wall"] += 10_000
    after = make("boot-b")
    assert after.accepted_at(bytes([4]) * 16) == pytest.approx(5.0 - 21)
    after.close()
    # past the window it is forgotten, also on disk
    tick(61)
    assert make("boot-b").accepted_at(bytes([4]) * 16) is None
    # a wall clock that went back (no RTC before NTP): counted as accepted now, not forgotten
    recent = make("boot-c")
    recent.note_accepted(b"\x0a" * 16)
    recent.close()
    clock["mono"], clock["wall"] = 1.0, 0
    assert make("boot-d").accepted_at(b"\x0a" * 16) == 1.0
