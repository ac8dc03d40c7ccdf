"""The site broker's logins and ACLs follow the signed site registry, live.

Choice: Mosquitto's dynamic-security plugin (in Debian's mosquitto 2.x), driven by the gateway
over `$CONTROL/dynamic-security/v1`, rather than regenerating passwd/acl and sending SIGHUP:
the gateway runs as another user than mosquitto (no signal across users without root), the
acl_file of mosquitto 2.0 never refuses a subscription in the SUBACK (dynsec does), and
dynsec's deleteClient disconnects the unit at once, where a reloaded password file only stops
its next login.

Passwords: dynsec 2.0 takes a unit's password only in plain text (createClient has no
salted-hash form), and no secret may travel in a distributed document. So a unit's MQTT
password is derived: HMAC-SHA256(site unit key, "chot-mqtt-v1" | unit id), the key written
0600 by `chot provision` into the site folder and the gateway bundles (`mqtt-units.key`). The
signed registry carries only ids, keys, lanes and revocations. Holding the key gives no more
than the gateway already has as the broker's dynsec admin (it could set any password), and
unit ids are never reused, so a revoked unit's password never logs in again.
"""

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable

from protocol import topics
from protocol.dcc_trust import dcc_trust_topic
from protocol.registry import Registry

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
UNIT_KEY_NAME = "mqtt-units.key"
_CONTEXT = b"chot-mqtt-v1\x00"


def unit_password(unit_key: bytes, unit_id: str) -> str:
    """The MQTT password of a unit: what provisioning writes in its bundle."""
    digest = hmac.new(unit_key, _CONTEXT + unit_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def unit_role(unit_id: str) -> str:
    return f"chot-unit-{unit_id}"


def _acl(acltype: str, topic: str) -> dict:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def unit_acls(site: str, unit_id: str) -> list[dict]:
    """Exactly its own topics: write event/status/heartbeat, read ack/config and the lists."""
    send = [topics.device_topic(site, unit_id, leaf) for leaf in ("event", "status", "heartbeat")]
    read = [
        topics.ack_topic(site, unit_id),
        topics.config_topic(site, unit_id),
        topics.trust_topic(site),
        topics.revocations_topic(site),
        dcc_trust_topic(site),
        topics.recent_topic(site),  # the site's accepted passes: one pass, one entry
    ]
    return [_acl("publishClientSend", t) for t in send] + [
        _acl("subscribeLiteral", t) for t in read
    ]


class BrokerAdmin:
    """Turns a registry into dynsec commands, published with the gateway's own connection
    (a second login with the gateway's name would kick the first)."""

    def __init__(self, site: str, unit_key: bytes, publish: Callable[[str, bytes], None]) -> None:
        self.site = site
        self.unit_key = unit_key
        self.publish = publish
        self.applied: dict[str, bool] = {}  # unit id -> active, as last sent

    def commands(self, registry: Registry, *, full: bool = False) -> list[dict]:
        """Commands that bring the broker to the registry; `full` resends every unit (after a
        reconnect: the broker may have been restored from an older dynsec file)."""
        out: list[dict] = []
        for signer in registry:
            if signer.role != "device" or signer.site != self.site:
                continue
            active = not signer.revoked
            if not full and self.applied.get(signer.id) == active:
                continue
            role = unit_role(signer.id)
            if active:
                out += [
                    {"command": "createRole", "rolename": role},
                    *(
                        {"command": "addRoleACL", "rolename": role, **acl}
                        for acl in unit_acls(self.site, signer.id)
                    ),
                    {
                        "command": "createClient",
                        "username": signer.id,
                        "password": unit_password(self.unit_key, signer.id),
                        "roles": [{"rolename": role}],
                    },
                    {"command": "enableClient", "username": signer.id},
                ]
            else:  # deleting the client disconnects it at once
                out += [
                    {"command": "deleteClient", "username": signer.id},
                    {"command": "deleteRole", "rolename": role},
                ]
        return out

    def apply(self, registry: Registry, *, full: bool = False) -> int:
        """Send what changed; returns how many units were (re)applied."""
        commands = self.commands(registry, full=full)
        if not commands:
            return 0
        self.publish(CONTROL_TOPIC, json.dumps({"commands": commands}).encode())
        units = {
            s.id: not s.revoked for s in registry if s.role == "device" and s.site == self.site
        }
        changed = [u for u, active in units.items() if full or self.applied.get(u) != active]
        self.applied.update(units)
        log.info(
            "broker logins follow the registry: %d active, %d revoked units applied",
            sum(units[u] for u in changed),
            sum(not units[u] for u in changed),
        )
        return len(changed)
