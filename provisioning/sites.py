"""Devices, gateways and gate operators of a site: identities, broker access, bundles.

A bundle is a folder to copy onto the unit's SD card: its config, its own Ed25519 key and MQTT
password (0600), the site CA certificate and the newest signed trust and revocation lists. The
home keeps only public data about a unit (registry.json); the private key exists in the bundle
alone, so a lost home leaks no device key and a lost SD card costs one `revoke`.

Everything here works on a home's public files (``HomeFiles``); signing stays in home.py,
which calls in here, never the other way round.
"""

import json
import logging
import secrets
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from gateway.broker_admin import UNIT_KEY_NAME, unit_password
from protocol.ids import require_id
from protocol.registry import Registry, Signer
from provisioning import bundles, mqtt_auth, site_policy, tls, toml_out
from provisioning.errors import OpsError
from provisioning.keys import new_key_file
from provisioning.secrets import write_secret
from provisioning.state import HomeFiles, SiteRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceBundle:
    device_id: str
    site: str
    lane: str
    folder: Path
    public_key: bytes

    @property
    def config_path(self) -> Path:
        return self.folder / bundles.DEVICE_CONFIG_NAME


@dataclass(frozen=True)
class GatewayBundle:
    gateway_id: str
    site: str
    folder: Path
    public_key: bytes

    @property
    def config_path(self) -> Path:
        return self.folder / bundles.GATEWAY_CONFIG_NAME


def ensure_site(
    home: HomeFiles, site: str, broker_host: str | None = None, broker_port: int | None = None
) -> SiteRecord:
    """The site's record and CA, created on first use; host/port given here are remembered."""
    record = home.state.sites.setdefault(require_id(site, "site"), SiteRecord())
    if broker_host:
        record.broker_host = broker_host
    if broker_port:
        record.broker_port = int(broker_port)
    folder = home.site_dir(site)
    if not (folder / "ca.crt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        tls.create_ca(folder, site)
    if not (folder / UNIT_KEY_NAME).exists():  # units' MQTT passwords derive from it
        write_secret(folder / UNIT_KEY_NAME, (secrets.token_bytes(32).hex() + "\n").encode())
    home.save()
    write_acl(home, site)
    return record


def unit_mqtt_password(home: HomeFiles, site: str, unit_id: str) -> str:
    """A unit's MQTT password, derived from the site's unit key, so the site gateway can give
    it to the broker (dynamic security) with nothing secret in the signed registry."""
    key = bytes.fromhex((home.site_dir(site) / UNIT_KEY_NAME).read_text().strip())
    return unit_password(key, unit_id)


def write_acl(home: HomeFiles, site: str) -> None:
    record = home.state.sites[site]
    (home.site_dir(site) / "acl").write_text(mqtt_auth.site_acl(site, record.gateways))


def _new_unit(
    home: HomeFiles, unit_id: str, folder: Path, key_name: str, password: str | None = None
) -> tuple[bytes, str]:
    """Key + MQTT password files in a fresh bundle folder; returns (public key, password)."""
    require_id(unit_id, "id")
    if unit_id in home.registry().signers:
        raise OpsError(f"{unit_id} is already registered; revoke it and use a new name")
    if folder.exists() and any(folder.iterdir()):
        raise OpsError(f"{folder} is not empty; refusing to overwrite a bundle")
    folder.mkdir(parents=True, exist_ok=True)
    key = new_key_file(folder / key_name)
    password = password or mqtt_auth.new_password()
    write_secret(folder / "mqtt.password", (password + "\n").encode())
    return bytes(key.verify_key), password


def _copy_public_files(home: HomeFiles, site: str, folder: Path) -> None:
    shutil.copyfile(home.site_dir(site) / "ca.crt", folder / "ca.crt")
    shutil.copyfile(home.path / "trust.cose", folder / "trust.cose")
    shutil.copyfile(home.path / "revocations.cose", folder / "revocations.cose")


def add_device(
    home: HomeFiles,
    site: str,
    name: str,
    *,
    lane: str | None = None,
    out: Path | None = None,
    broker_host: str | None = None,
    broker_port: int | None = None,
    camera_source: str = "picamera2",
    gpio_backend: str = "rpigpio",
) -> DeviceBundle:
    """A scanner: identity, MQTT login, registry entry and bundle. `name` is the device id."""
    record = ensure_site(home, site, broker_host, broker_port)
    folder = Path(out) if out else home.path / "bundles" / name
    password = unit_mqtt_password(home, site, require_id(name, "id"))
    public_key, password = _new_unit(home, name, folder, "device.key", password)
    lane = lane or "lane-1"
    mqtt_auth.set_password(home.site_dir(site) / "passwd", name, password)
    registry = home.registry()
    registry.add(Signer(name, site, "device", public_key, lane=lane))
    home.save_registry(registry)
    refresh_gateway_bundles(home, site)  # the site's gateways must know the new device
    _copy_public_files(home, site, folder)
    text = bundles.device_config(
        device_id=name,
        site=site,
        lane=lane,
        root_public_key_hex=home.state.root_public_key,
        broker_host=record.broker_host,
        broker_port=record.broker_port,
        gateway_public_keys=site_gateway_keys(registry, site),
        camera_source=camera_source,
        gpio_backend=gpio_backend,
        duplicate_window_s=record.duplicate_window_s,
    )
    (folder / bundles.DEVICE_CONFIG_NAME).write_text(text)
    record.device_bundles[name] = str(folder.resolve())
    home.save()
    if not site_gateway_keys(registry, site):
        log.warning(
            "device %s: site %s has no gateway yet: the bundle pins no gateway key and the "
            "unit refuses to start until `chot provision gateway add` rewrites it",
            name,
            site,
        )
    log.info("device %s added at site %s, bundle %s", name, site, folder)
    return DeviceBundle(name, site, lane, folder, public_key)


def add_gateway(
    home: HomeFiles,
    site: str,
    name: str,
    *,
    out: Path | None = None,
    broker_host: str | None = None,
    broker_port: int | None = None,
    central_url: str = "http://127.0.0.1:8600",
    web_hosts: list[str] | None = None,
    web_cert: Path | None = None,
    web_key: Path | None = None,
) -> GatewayBundle:
    """A site gateway: event-signing key, MQTT login with the site-wide ACL, central token,
    and the status page's HTTPS certificate (`web_hosts` + localhost, from the site CA; or
    the operator's own `web_cert`/`web_key`)."""
    if (web_cert is None) != (web_key is None):
        raise OpsError("--web-cert and --web-key go together")
    if web_cert is not None and web_key is not None:
        try:  # before anything is registered: a wrong pair leaves no half-made gateway
            tls.check_key_pair(web_cert, web_key)
        except (OSError, ValueError) as exc:
            raise OpsError(f"web certificate: {exc}") from None
    ensure_site(home, site, None, broker_port)
    record = home.state.sites[site]
    folder = Path(out) if out else home.path / "bundles" / name
    public_key, password = _new_unit(home, name, folder, "gateway.key")
    token = secrets.token_urlsafe(32)
    write_secret(folder / "central.token", (token + "\n").encode())
    # signs the status page's session cookies: operators stay logged in across restarts
    write_secret(folder / bundles.WEB_SECRET_NAME, (secrets.token_hex(32) + "\n").encode())
    mqtt_auth.set_password(home.site_dir(site) / "passwd", name, password)
    registry = home.registry()
    registry.add(Signer(name, site, "gateway", public_key))
    registry.set_token(name, token)
    home.save_registry(registry)
    registry.for_site(site).save(folder / "registry.json")
    if name not in record.gateways:
        record.gateways.append(name)
    record.gateway_bundles[name] = str(folder.resolve())
    home.save()
    write_acl(home, site)
    refresh_device_bundles(home, site)  # the site's units pin the new gateway's key
    _copy_public_files(home, site, folder)
    _web_certificate(home, site, folder, web_hosts or [], web_cert, web_key)
    documents = folder / bundles.DOCUMENTS_DIR
    documents.mkdir()
    for document in ("trust.cose", "revocations.cose"):
        shutil.move(folder / document, documents / document)
    unit_key = (home.site_dir(site) / UNIT_KEY_NAME).read_bytes()
    write_secret(folder / UNIT_KEY_NAME, unit_key)  # the gateway gives units their logins
    operators = home.site_dir(site) / "operators.json"
    if operators.exists():
        write_secret(folder / "operators.json", operators.read_bytes(), replace=True)
    (folder / bundles.GATEWAY_CONFIG_NAME).write_text(
        bundles.gateway_config(
            gateway_id=name,
            site=site,
            root_public_key_hex=home.state.root_public_key,
            # the gateway runs beside the broker: loopback, still over TLS
            broker_host=broker_host or "127.0.0.1",
            broker_port=record.broker_port,
            central_url=central_url,
            lanes=_site_lanes(registry, site),
            duplicate_window_s=record.duplicate_window_s,
        )
    )
    log.info("gateway %s added at site %s, bundle %s", name, site, folder)
    return GatewayBundle(name, site, folder, public_key)


def _web_certificate(
    home: HomeFiles,
    site: str,
    folder: Path,
    hosts: list[str],
    own_cert: Path | None,
    own_key: Path | None,
) -> None:
    """web.crt + web.key (0600) in a gateway bundle: the operator's own pair (checked by the
    caller), or one issued by the site CA for `hosts` and the loopback names."""
    if own_cert is not None and own_key is not None:
        shutil.copyfile(own_cert, folder / bundles.WEB_CERT_NAME)
        write_secret(folder / bundles.WEB_KEY_NAME, own_key.read_bytes())
        return
    names = [*hosts, "localhost", "127.0.0.1", "::1"]
    tls.create_server_cert(home.site_dir(site), folder, names, name="web")


def _site_lanes(registry: Registry, site: str) -> dict[str, int]:
    """lane -> capacity for the lanes of the site's registered devices (default lane-1)."""
    lanes = {s.lane for s in registry.for_site(site) if s.role == "device" and s.lane}
    return {lane: bundles.LANE_CAPACITY for lane in sorted(lanes or {"lane-1"})}


def revoke_signer(home: HomeFiles, unit_id: str) -> str:
    """Revoke a device or gateway in the site files: password line, ACL, registry, and the
    id in the state's revoked devices. Returns its site.

    The caller (``OpsHome``) then re-signs the revocation list, which also refreshes the site's
    gateway bundles. `chot provision publish` then takes the signed registry to the centre; the
    site's gateway fetches it and deletes the unit's broker login (dynamic security) within a
    minute, with no file copied and no broker restart.
    """
    registry = home.registry()
    signer = registry.signers.get(unit_id)
    if signer is None:
        raise OpsError(f"{unit_id} is not registered")
    if signer.revoked:
        raise OpsError(f"{unit_id} is already revoked")
    registry.revoke(unit_id)
    registry.tokens.pop(unit_id, None)
    home.save_registry(registry)
    mqtt_auth.remove_user(home.site_dir(signer.site) / "passwd", unit_id)
    record = home.state.sites.get(signer.site)
    if record and unit_id in record.gateways:
        record.gateways.remove(unit_id)
    home.state.revoked_devices = sorted({*home.state.revoked_devices, unit_id})
    home.save()
    write_acl(home, signer.site)
    if signer.role == "gateway":
        refresh_device_bundles(home, signer.site)  # its acks free no outbox any more
    log.info("%s %s revoked at site %s", signer.role, unit_id, signer.site)
    return signer.site


def refresh_gateway_bundles(home: HomeFiles, site: str | None = None) -> list[Path]:
    """Bring the site's gateway bundles up to date: registry, the newest signed lists and the
    site's policy in gateway.toml (rewritten only when it differs).

    A running gateway watches both (registry file mtime, documents/ folder), so a revocation
    reaches it, and through it the site's scanners, without a restart. Returns the folders."""
    refreshed = []
    registry = home.registry()  # read once, not once per gateway
    for site_id, record in home.state.sites.items():
        if site is not None and site_id != site:
            continue
        for gateway, folder in record.gateway_bundles.items():
            bundle = Path(folder)
            if gateway not in record.gateways or not (bundle / "documents").is_dir():
                continue
            registry.for_site(site_id).save(bundle / "registry.json")
            for document in ("trust.cose", "revocations.cose"):
                target = bundle / bundles.DOCUMENTS_DIR / document
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(home.path / document, tmp)
                tmp.replace(target)
            config = bundle / bundles.GATEWAY_CONFIG_NAME
            if config.is_file():
                header = (
                    f"chot gateway {gateway} at {site_id} - site policy written by `chot provision`"
                )
                site_policy.write_policy(config, record.duplicate_window_s, header)
            refreshed.append(bundle)
    return refreshed


def site_gateway_keys(registry: Registry, site: str) -> dict[str, str]:
    """gateway id -> Ed25519 public key (hex) of the site's gateways that are not revoked:
    what a device bundle pins in `[trust] gateway_public_keys`."""
    return {
        s.id: s.public_key.hex()
        for s in registry.for_site(site)
        if s.role == "gateway" and not s.revoked
    }


def refresh_device_bundles(home: HomeFiles, site: str) -> list[Path]:
    """Rewrite `[trust] gateway_public_keys` and the site's `[policy] duplicate_window_s` in
    the site's device bundles kept by the home (every other setting, edited or not, is kept). A unit already deployed needs its new
    device.toml copied over, as for any bundle change. Returns the configs rewritten."""
    keys = site_gateway_keys(home.registry(), site)
    record = home.state.sites.get(site)
    written = []
    for device, folder in sorted(record.device_bundles.items() if record else []):
        path = Path(folder) / bundles.DEVICE_CONFIG_NAME
        if not path.is_file():
            log.warning("device %s: bundle %s is gone; not rewritten", device, path)
            continue
        data = tomllib.loads(path.read_text())
        data.setdefault("trust", {})["gateway_public_keys"] = dict(sorted(keys.items()))
        data.setdefault("policy", {})["duplicate_window_s"] = record.duplicate_window_s
        top = {k: v for k, v in data.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in data.items() if isinstance(v, dict)}
        header = f"chot device {device} at {site} - gateway keys refreshed by `chot provision`"
        path.write_text(toml_out.dumps({"": top, **tables}, header))
        written.append(path)
    return written


def add_operator(home: HomeFiles, site: str, user: str, password: str) -> Path:
    """A gate operator's login for the gateway web page: argon2id hash in operators.json."""
    require_id(user, "user")
    if len(password) < 8:
        raise OpsError("operator passwords need at least 8 characters")
    ensure_site(home, site)
    path = home.site_dir(site) / "operators.json"
    data = json.loads(path.read_text()) if path.exists() else {"version": 1, "users": {}}
    if user in data["users"]:
        raise OpsError(f"operator {user} already exists at {site}")
    data["users"][user] = {"hash": PasswordHasher().hash(password), "created": int(time.time())}
    payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    write_secret(path, payload, replace=True)
    for gateway in home.state.sites[site].gateways:  # keep bundles in the home current
        bundle = home.path / "bundles" / gateway
        if bundle.is_dir():
            write_secret(bundle / "operators.json", payload, replace=True)
    return path
