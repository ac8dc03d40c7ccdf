"""A test PKI for EU Digital COVID Certificates: a CSCA-like test CA, Document Signer
Certificates (ES256 on P-256, PS256 on RSA) with chosen validity and key usage, and an issuer
that signs hcert payloads into `HC1:` texts with every knob a negative test needs.

Keys are generated per test session; nothing here is a real certificate or a committed key.
"""

import datetime as dt
import zlib
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from protocol import cose
from protocol.base45 import b45encode
from protocol.dcc import ALG_ES256, CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS
from protocol.dcc_trust import dsc_kid

# A fixed "now" for tests: 2022-03-01 00:00 UTC, inside every default validity below.
NOW = 1646092800
DAY = 86400
EKU_OIDS = {
    "test": "1.3.6.1.4.1.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.1847.2021.1.3",
}
EKU_OIDS_ALT = {k: v.replace(".1847.", ".0.1847.") for k, v in EKU_OIDS.items()}


def _utc(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _name(cn: str, country: str = "VN") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class DccCa:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    name: x509.Name = field(default_factory=lambda: _name("chot test CSCA"))

    def issue(
        self,
        public_key: Any,
        *,
        cn: str = "chot test DSC",
        not_before: int = NOW - 365 * DAY,
        not_after: int = NOW + 365 * DAY,
        eku: tuple[str, ...] | None = None,
    ) -> bytes:
        """A DSC (DER) for `public_key`; `eku` is a list of OIDs (None: no EKU extension)."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(not_before))
            .not_valid_after(_utc(not_after))
        )
        if eku is not None:
            usage = x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku])
            builder = builder.add_extension(usage, critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(Encoding.DER)


@dataclass
class Signer:
    """A DSC with its private key."""

    der: bytes
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    alg: int

    @property
    def kid(self) -> bytes:
        return dsc_kid(self.der)

    def sign(self, data: bytes) -> bytes:
        if self.alg == ALG_ES256:
            assert isinstance(self.key, ec.EllipticCurvePrivateKey)
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert isinstance(self.key, rsa.RSAPrivateKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return self.key.sign(data, pss, hashes.SHA256())


def make_signer(ca: DccCa, alg: int = ALG_ES256, **issue: Any) -> Signer:
    if alg == ALG_ES256:
        key: Any = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(ca.issue(key.public_key(), **issue), key, alg)


# --- hcert payloads ---------------------------------------------------------------------------

NAM = {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn An", "gnt": "VAN<AN"}


def vaccination(**entry: Any) -> dict[str, Any]:
    base = {
        "tg": "840539006",
        "vp": "1119349007",
        "mp": "EU/1/20/1528",
        "ma": "ORG-100030215",
        "dn": 2,
        "sd": 2,
        "dt": "2022-01-10",
        "co": "VN",
        "is": "Ministry of Health",
        "ci": "URN:UVCI:01:VN:1234567890ABCDEF#K",
    }
    return {"ver": "1.3.0", "nam": dict(NAM), "dob": "1985-04-12", "v": [{**base, **entry}]}


def lab_test(**entry: Any) -> dict[str, Any]:
    base = {
        "tg": "840539006",
        "tt": "LP6464-4",
        "nm": "PCR",
        "sc": "2022-02-28T12:00:00Z",
        "tr": "260415000",
        "tc": "Test centre",
        "co": "VN",
        "is": "Ministry of Health",
        "ci": "URN:UVCI:01:VN:TEST0000000001#1",
    }
    return {"ver": "1.3.0", "nam": dict(NAM), "dob": "1985-04-12", "t": [{**base, **entry}]}


def recovery(**entry: Any) -> dict[str, Any]:
    base = {
        "tg": "840539006",
        "fr": "2022-01-20",
        "co": "VN",
        "is": "Ministry of Health",
        "df": "2022-01-31",
        "du": "2022-07-19",
        "ci": "URN:UVCI:01:VN:RECOV000000001#2",
    }
    return {"ver": "1.3.0", "nam": dict(NAM), "dob": "1985-04-12", "r": [{**base, **entry}]}


def cwt(
    hcert: Any, *, iat: int = NOW - 30 * DAY, exp: int = NOW + 335 * DAY, iss: str = "VN"
) -> dict:
    return {CLAIM_ISS: iss, CLAIM_IAT: iat, CLAIM_EXP: exp, CLAIM_HCERT: {1: hcert}}


def sign_cose(
    signer: Signer,
    payload: bytes,
    *,
    kid_in: str = "protected",  # protected | unprotected | both | none
    kid: bytes | None = None,
    alg: int | None = None,
    tagged: bool = True,
    tamper: bool = False,
    no_alg: bool = False,
) -> bytes:
    kid = signer.kid if kid is None else kid
    protected_map: dict[int, Any] = {cose.HDR_ALG: signer.alg if alg is None else alg}
    unprotected: dict[int, Any] = {}
    if no_alg:
        del protected_map[cose.HDR_ALG]
        unprotected[cose.HDR_ALG] = signer.alg  # an unprotected alg is not signed: ignored
    if kid_in in ("protected", "both"):
        protected_map[cose.HDR_KID] = kid
    if kid_in in ("unprotected", "both"):
        unprotected[cose.HDR_KID] = kid if kid_in == "unprotected" else b"\x00" * 8
    protected = cbor2.dumps(protected_map)
    signature = signer.sign(cose.sig_structure(protected, payload))
    if tamper:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    body = [protected, unprotected, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(18, body) if tagged else body)


def to_qr(cose_bytes: bytes, *, prefix: str = "HC1:", compress: bool = True) -> str:
    return prefix + b45encode(zlib.compress(cose_bytes, 9) if compress else cose_bytes)


def make_dcc(signer: Signer, hcert: Any | None = None, **cwt_args: Any) -> str:
    """The usual DCC: hcert in a CWT, kid protected, tagged, zlib, base45, HC1:."""
    claims = cwt(vaccination() if hcert is None else hcert, **cwt_args)
    return to_qr(sign_cose(signer, cbor2.dumps(claims)))
