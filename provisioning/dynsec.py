"""The site broker's starting dynamic-security file and where mosquitto's plugin lives.

Mosquitto's dynamic-security plugin keeps logins and ACLs in one JSON file it rewrites itself
on every change. `chot provision broker config` writes the starting one: the site's gateways,
each with the site's topics and the dynsec admin role (its own login publishes the commands to
`$CONTROL/dynamic-security/v1`), and nothing else. Units come later, from the gateway applying
the signed registry (gateway/broker_admin.py), so one source says who may log in.

A rerun keeps the units the broker already holds (clients whose only roles are unit roles, and
those roles) and rewrites the gateways: a revoked gateway's login goes, a new one comes.

Passwords are stored as the plugin expects them: PBKDF2-SHA512 with a salt and an iteration
count, base64; the site's password file holds the very same hash (`$7$101$salt$hash`), so a
gateway's entry is copied over without its password ever being known here.
"""

import base64
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from gateway.broker_admin import CONTROL_TOPIC, unit_role
from protocol.topics import ROOT
from provisioning.errors import OpsError
from provisioning.secrets import write_secret

PLUGIN_NAME = "mosquitto_dynamic_security.so"
# Debian's multiarch folders: the plugin of the `mosquitto` package lives in /usr/lib/<triplet>/
MULTIARCH = {
    "arm64": "aarch64-linux-gnu",  # Raspberry Pi 4/5 gateways (Raspberry Pi OS 64-bit)
    "amd64": "x86_64-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
}
DEFAULT_ARCH = "arm64"  # a site gateway is a Pi unless told otherwise
CONFIG_NAME = "dynamic-security.json"
GATEWAY_ROLE = "chot-gateway"

# What a client may do when no role says otherwise: receive what it subscribed to, nothing else
# (tests that hand-build a broker config use this too, so they run under the shipped default).
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": True,
    "subscribe": False,
    "unsubscribe": True,
}

ADMIN_ROLE = "chot-dynsec-admin"
PBKDF2_ITERATIONS = 101  # as mosquitto_passwd and provisioning/mqtt_auth.py


def plugin_for_arch(arch: str) -> str:
    """The plugin's path on a Debian/Raspberry Pi OS machine of that architecture."""
    if arch not in MULTIARCH:
        raise OpsError(f"unknown broker architecture {arch!r}; one of {', '.join(MULTIARCH)}")
    return f"/usr/lib/{MULTIARCH[arch]}/{PLUGIN_NAME}"


@functools.cache
def local_plugin() -> Path:
    """The plugin installed on this machine (to run the broker here: check, demo, tests):
    asked of dpkg, else looked for under /usr/lib."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "mosquitto"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.splitlines()
    except OSError:
        listed = []
    found = [Path(p) for p in listed if p.endswith("/" + PLUGIN_NAME)]
    found += [*sorted(Path("/usr/lib").glob(f"*/{PLUGIN_NAME}")), Path("/usr/lib") / PLUGIN_NAME]
    for path in found:
        if path.is_file():
            return path
    raise OpsError(
        f"mosquitto's {PLUGIN_NAME} is not installed here (Debian: apt install mosquitto)"
    )


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def gateway_acls(site: str) -> list[dict[str, Any]]:
    """A gateway reads and writes its own site's tree, and nothing of another site."""
    tree = f"{ROOT}/{site}/#"
    return [_acl("publishClientSend", tree), _acl("subscribePattern", tree)]


def admin_acls() -> list[dict[str, Any]]:
    return [
        _acl("publishClientSend", CONTROL_TOPIC),
        _acl("subscribeLiteral", f"{CONTROL_TOPIC}/response"),
    ]


def hashed_client(username: str, password_hash: str, roles: list[str]) -> dict[str, Any]:
    """A dynsec client from a password-file hash field (`$7$<iterations>$<salt>$<hash>`)."""
    parts = password_hash.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise OpsError(f"{username}: password hash is not mosquitto's $7$ format")
    return {
        "username": username,
        "password": parts[4],
        "salt": parts[3],
        "iterations": int(parts[2]),
        "roles": [{"rolename": r} for r in roles],
    }


def client(username: str, password: str, roles: list[str]) -> dict[str, Any]:
    """A dynsec client with a fresh salt (the check's throwaway logins)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return hashed_client(
        username, f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}", roles
    )


def _kept_units(existing: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The units a live broker already holds (the gateway put them there)."""
    unit_roles = [
        r for r in existing.get("roles", []) if str(r.get("rolename", "")).startswith("chot-unit-")
    ]
    names = {r["rolename"] for r in unit_roles}
    clients = [
        c
        for c in existing.get("clients", [])
        if c.get("roles")
        and all(r.get("rolename") in names for r in c["roles"])
        and unit_role(str(c.get("username"))) in names
    ]
    return clients, unit_roles


def starting_document(
    site: str, gateways: dict[str, str], existing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dynsec file: `gateways` is gateway id -> password-file hash field."""
    clients = [
        hashed_client(gw, hashed, [GATEWAY_ROLE, ADMIN_ROLE])
        for gw, hashed in sorted(gateways.items())
    ]
    roles = [
        {"rolename": GATEWAY_ROLE, "acls": gateway_acls(site)},
        {"rolename": ADMIN_ROLE, "acls": admin_acls()},
    ]
    if existing:
        unit_clients, unit_roles = _kept_units(existing)
        clients += unit_clients
        roles += unit_roles
    return {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def read_document(path: Path) -> dict[str, Any] | None:
    """The broker's current file, or None when there is none or it is unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_document(path: Path, document: dict[str, Any]) -> None:
    """0600: it holds password hashes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_secret(path, (json.dumps(document, indent=2) + "\n").encode(), replace=True)
