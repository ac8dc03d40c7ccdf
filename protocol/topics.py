"""The MQTT topic tree, all under `chot/v1/`. One function per topic so no code builds one by hand.

chot/v1/{site}/dev/{device}/event      device -> gateway  QoS 1        signed Event (CBOR)
chot/v1/{site}/dev/{device}/ack        gateway -> device  QoS 1        {"seq": n} JSON
chot/v1/{site}/dev/{device}/status     device, retained, last will     {"state": ...} JSON
chot/v1/{site}/dev/{device}/heartbeat  device             QoS 0        health JSON
chot/v1/{site}/dev/{device}/config     gateway, retained  QoS 1        signed config (CBOR)
chot/v1/{site}/trust                   gateway, retained  QoS 1        signed trust list
chot/v1/{site}/revocations             gateway, retained  QoS 1        signed revocation list
chot/v1/{site}/recent                  gateway, retained  QoS 1        signed recent passes (protocol/recent.py)
chot/v1/{site}/dcc-trust               gateway, retained  QoS 1        signed DCC trust list (DSCs)
chot/v1/{site}/gw/{gateway}/status     gateway, retained, last will    JSON
"""

from dataclasses import dataclass

from protocol.ids import require_id

ROOT = "chot/v1"
DEVICE_LEAVES = ("event", "ack", "status", "heartbeat", "config")


def device_topic(site: str, device: str, leaf: str) -> str:
    if leaf not in DEVICE_LEAVES:
        raise ValueError(f"unknown device topic {leaf!r}")
    return f"{ROOT}/{require_id(site, 'site')}/dev/{require_id(device, 'device')}/{leaf}"


def event_topic(site: str, device: str) -> str:
    return device_topic(site, device, "event")


def ack_topic(site: str, device: str) -> str:
    return device_topic(site, device, "ack")


def status_topic(site: str, device: str) -> str:
    return device_topic(site, device, "status")


def heartbeat_topic(site: str, device: str) -> str:
    return device_topic(site, device, "heartbeat")


def config_topic(site: str, device: str) -> str:
    return device_topic(site, device, "config")


def trust_topic(site: str) -> str:
    return f"{ROOT}/{require_id(site, 'site')}/trust"


def revocations_topic(site: str) -> str:
    return f"{ROOT}/{require_id(site, 'site')}/revocations"


def dcc_trust_topic(site: str) -> str:
    """The signed DCC trust list (EU DCC signers, protocol/dcc_trust.py)."""
    return f"{ROOT}/{require_id(site, 'site')}/dcc-trust"


def recent_topic(site: str) -> str:
    """Passes accepted at the site within its window: one pass, one entry across lanes."""
    return f"{ROOT}/{require_id(site, 'site')}/recent"


def gateway_status_topic(site: str, gateway: str) -> str:
    return f"{ROOT}/{require_id(site, 'site')}/gw/{require_id(gateway, 'gateway')}/status"


def site_device_filter(site: str, leaf: str) -> str:
    """Subscription filter for one leaf of every device at a site, e.g. all events."""
    if leaf not in DEVICE_LEAVES:
        raise ValueError(f"unknown device topic {leaf!r}")
    return f"{ROOT}/{require_id(site, 'site')}/dev/+/{leaf}"


def shared(filter_: str, group: str) -> str:
    """MQTT 5 shared subscription: a gateway pair splits one site's events between them."""
    return f"$share/{require_id(group, 'group')}/{filter_}"


@dataclass(frozen=True)
class DeviceTopic:
    site: str
    device: str
    leaf: str


def parse_device_topic(topic: str) -> DeviceTopic | None:
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[3] != "dev":
        return None
    if parts[5] not in DEVICE_LEAVES:
        return None
    return DeviceTopic(parts[2], parts[4], parts[5])
