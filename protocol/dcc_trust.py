"""DCC trust list: the Document Signer Certificates (DSC) a unit trusts for EU Digital COVID
Certificates, in one root-signed, versioned document with a maximum age.

It travels exactly like the chot trust list (`documents.SignedDocument`, retained on
`chot/v1/{site}/dcc-trust`, rollback refused, past `exp` -> `trust_stale`). Each entry is the
DSC's DER bytes; everything else (kid, key, validity, allowed types) is derived from the
certificate itself, so the list cannot say something the certificate does not.

The body also carries `psk`, the ops pseudonym key: events name a DCC by
HMAC-SHA256(psk, ci)[0:16], never by its certificate identifier (see protocol/README.md §6).
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from nacl.signing import SigningKey

from protocol.documents import SignedDocument, open_document, sign_document
from protocol.reasons import ProtocolError, Reason
from protocol.topics import dcc_trust_topic as dcc_trust_topic  # re-exported

DCC_TRUST_TYPE = "chot-dcc-trust"
DCC_KINDS = ("vaccination", "test", "recovery")
PSEUDONYM_KEY_LENGTH = 32
MAX_CERTIFICATE_BYTES = 16 * 1024

# hcert §5.1.1: extended key usage OIDs a DSC may carry to limit what it signs; both arcs occur.
_EKU_KINDS = {
    f"1.3.6.1.4.1.{arc}1847.2021.1.{n}": kind
    for arc in ("", "0.")
    for n, kind in ((1, "test"), (2, "vaccination"), (3, "recovery"))
}


def dsc_kid(der: bytes) -> bytes:
    """hcert kid: the first 8 bytes of SHA-256 over the DER certificate."""
    return hashlib.sha256(der).digest()[:8]


@dataclass(frozen=True)
class Dsc:
    """One trusted Document Signer Certificate, parsed once when the list is loaded."""

    kid: bytes
    der: bytes
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    not_before: int
    not_after: int
    kinds: frozenset[str]
    country: str
    is_ec: bool  # P-256 (ES256) or RSA (PS256): decided once here, not per scan

    def in_force(self, at: int) -> bool:
        return self.not_before <= at <= self.not_after


def dsc_from_der(der: bytes) -> Dsc:
    """Parse a DSC; ValueError when it is not an X.509 certificate with a P-256 or RSA key."""
    der = bytes(der)
    if not der or len(der) > MAX_CERTIFICATE_BYTES:
        raise ValueError("a DSC is 1 byte to 16 KiB of DER")
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC key on {key.curve.name}, ES256 needs P-256")
    elif not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("DSC key is neither EC P-256 nor RSA")
    countries = cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
    return Dsc(
        kid=dsc_kid(der),
        der=der,
        public_key=key,
        not_before=int(cert.not_valid_before_utc.astimezone(UTC).timestamp()),
        not_after=int(cert.not_valid_after_utc.astimezone(UTC).timestamp()),
        kinds=_allowed_kinds(cert),
        country=str(countries[0].value) if countries else "",
        is_ec=isinstance(key, ec.EllipticCurvePublicKey),
    )


def _allowed_kinds(cert: x509.Certificate) -> frozenset[str]:
    """EKU with hcert OIDs limits the types; no EKU (or none of those OIDs) means all three."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset(DCC_KINDS)
    kinds = frozenset(_EKU_KINDS[o.dotted_string] for o in usage if o.dotted_string in _EKU_KINDS)
    return kinds or frozenset(DCC_KINDS)


def read_certificate(data: bytes) -> bytes:
    """One certificate file -> DER: PEM, base64 of DER, or DER. ValueError otherwise."""
    data = bytes(data)
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    if data[:1] == b"\x30":  # an ASN.1 SEQUENCE: already DER
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    try:
        der = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither PEM, DER nor base64 DER") from None
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.DER)


def read_national_list(data: bytes) -> list[bytes]:
    """A national backend's DSC list (JSON: items with `kid` and a base64 DER certificate as
    `rawData`, `certificate`, `cert` or `der`; either a list or under `certificates`).

    A kid that does not match the certificate is refused: the list is not trusted to say it."""
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(items, dict):
        items = items.get("certificates")
    if not isinstance(items, list):
        raise ValueError("expected a JSON list of {kid, rawData} (or {certificates: [...]})")
    ders = []
    for index, item in enumerate(items):
        raw = next(
            (item.get(k) for k in _CERT_FIELDS if isinstance(item, dict) and k in item), None
        )
        if not isinstance(raw, str):
            raise ValueError(f"item {index}: no base64 certificate ({'/'.join(_CERT_FIELDS)})")
        der = read_certificate(raw.encode("ascii", "replace"))
        kid = item.get("kid")
        if kid is not None and _b64(kid, index) != dsc_kid(der):
            raise ValueError(f"item {index}: kid {kid} does not match the certificate")
        ders.append(der)
    return ders


_CERT_FIELDS = ("rawData", "certificate", "cert", "der")


def _b64(text: Any, index: int) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"item {index}: kid is not base64") from None


@dataclass(frozen=True)
class DccTrust:
    """The DSCs a verifier trusts. `pseudonym_key` is None only for ad-hoc command-line trust
    (`chot pass verify --dsc`), where nothing is published."""

    version: int
    issued_at: int
    expires_at: int
    dscs: Mapping[bytes, Dsc]  # by kid
    pseudonym_key: bytes | None = None
    raw: bytes = b""

    def dsc_for(self, kid: bytes) -> Dsc | None:
        return self.dscs.get(kid)


def direct_trust(ders: Iterable[bytes]) -> DccTrust:
    """Trust certificates given directly (no signed list): never stale, no pseudonym key."""
    dscs = {d.kid: d for d in map(dsc_from_der, ders)}
    return DccTrust(0, 0, 2**63 - 1, dscs)


def sign_dcc_trust_list(
    certificates: Iterable[bytes],
    *,
    pseudonym_key: bytes,
    version: int,
    issued_at: int,
    expires_at: int,
    root_key: SigningKey,
) -> bytes:
    """Sign DSCs (DER) into a DCC trust list; entries are sorted and deduplicated by kid."""
    if len(pseudonym_key) != PSEUDONYM_KEY_LENGTH:
        raise ValueError("the pseudonym key is 32 bytes")
    unique = {dsc_kid(bytes(der)): bytes(der) for der in certificates}
    for der in unique.values():
        dsc_from_der(der)  # never sign a list a verifier would refuse
    body = {"dscs": [unique[k] for k in sorted(unique)], "psk": bytes(pseudonym_key)}
    return sign_document(DCC_TRUST_TYPE, version, issued_at, expires_at, body, root_key)


def dcc_trust_from_document(doc: SignedDocument) -> DccTrust:
    """Parse a verified document; any malformed entry refuses the whole list (bad_claims)."""
    entries, psk = doc.body.get("dscs"), doc.body.get("psk")
    if not isinstance(entries, list) or not all(isinstance(e, bytes) for e in entries):
        raise ProtocolError(Reason.BAD_CLAIMS, "DCC trust list needs dscs: [DER bytes]")
    if not isinstance(psk, bytes) or len(psk) != PSEUDONYM_KEY_LENGTH:
        raise ProtocolError(Reason.BAD_CLAIMS, "DCC trust list needs a 32-byte psk")
    try:
        dscs = {d.kid: d for d in map(dsc_from_der, entries)}
    except ValueError as exc:
        raise ProtocolError(Reason.BAD_CLAIMS, f"DSC refused: {exc}") from None
    return DccTrust(doc.version, doc.issued_at, doc.expires_at, dscs, psk, doc.raw)


def open_dcc_trust_list(data: bytes, root_keys: Mapping[bytes, bytes]) -> DccTrust:
    """Verify (ops root) and parse a signed DCC trust list."""
    return dcc_trust_from_document(open_document(data, DCC_TRUST_TYPE, root_keys))
