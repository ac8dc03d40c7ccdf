"""A site CA, the broker's server certificate and the status page's web certificate, made
with the `cryptography` package.

Why not the openssl CLI: no subprocess and no shell quoting, the same code on every machine
(a wheel, no system openssl version differences), and tests can read the certificates back.
ECDSA P-256: supported by every TLS stack a Pi, paho and mosquitto use.
"""

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.secrets import write_secret

CA_DAYS = 10 * 365
SERVER_DAYS = 2 * 365


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chot"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(folder: Path, site: str) -> None:
    """ca.key (0600) + ca.crt for one site. Refuses to overwrite the key."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_secret(folder / "ca.key", _key_pem(key))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"chot site CA {site}"))
        .issuer_name(_name(f"chot site CA {site}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def create_server_cert(
    ca_folder: Path, out: Path, hosts: list[str], *, name: str = "server"
) -> None:
    """{name}.key (0600) + {name}.crt signed by the site CA, valid for `hosts` (DNS names or
    IPs): `server` for the broker, `web` for the gateway's status page."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    ca_key = serialization.load_pem_private_key((ca_folder / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_folder / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    write_secret(out / f"{name}.key", _key_pem(key))
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # once each, in order
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (out / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check_key_pair(cert_file: Path, key_file: Path) -> None:
    """Refuse an operator's own certificate whose key does not match (ValueError)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise ValueError(f"{key_file} is not the key of {cert_file}")
