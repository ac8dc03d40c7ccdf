"""The DCC trust list in the ops home: Document Signer Certificates for EU Digital COVID
Certificates, signed by the ops root like the chot trust list.

    HOME/dcc/dscs/<kid>.der   trusted DSCs, public
    HOME/dcc/state.json       last signed version (a version is never reused)
    HOME/dcc/pseudonym.key    HMAC key for DCC subject pseudonyms (hex, 0600; in every list)
    HOME/dcc-trust.cose       newest signed DCC trust list, also copied to the gateway bundles

`chot provision dcc add CERT...` trusts certificate files (PEM, base64 DER or DER); `dcc import
FILE` takes a national backend's JSON list (kid + base64 DER, every kid checked). Each change
signs the next version with the home's max age; gateways republish it retained on
`chot/v1/{site}/dcc-trust` and units adopt only newer versions.
"""

import argparse
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from common.cli_words import KIND_WORDS
from common.i18n import N_, Phrase
from protocol.dcc_trust import (
    PSEUDONYM_KEY_LENGTH,
    dsc_from_der,
    read_certificate,
    read_national_list,
    sign_dcc_trust_list,
)
from provisioning.errors import VersionError
from provisioning.secrets import write_secret

DCC_DIR = "dcc"
DCC_TRUST_FILE = "dcc-trust.cose"
BUNDLE_DOCUMENTS_DIR = "documents"  # provisioning.bundles.DOCUMENTS_DIR


@dataclass(frozen=True)
class DscInfo:
    """What `dcc list` shows: public certificate data only."""

    kid: str
    country: str
    kinds: list[str]
    not_before: int
    not_after: int


@dataclass(frozen=True)
class Signed:
    version: int
    dscs: int
    added: list[str]  # kid hex of certificates new in this version
    path: str


class DccStore:
    """The DCC part of an ops home (`provisioning.home.OpsHome`): DSC files, version, key."""

    def __init__(self, home) -> None:
        self.home = home
        self.dir = Path(home.path) / DCC_DIR

    # -- state ----------------------------------------------------------------------------------

    def _state(self) -> dict:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"version": 0}

    def version(self) -> int:
        return int(self._state()["version"])

    def pseudonym_key(self) -> bytes:
        """The ops pseudonym key, created on first use (never overwritten)."""
        path = self.dir / "pseudonym.key"
        if not path.exists():
            write_secret(path, (secrets.token_bytes(PSEUDONYM_KEY_LENGTH).hex() + "\n").encode())
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != PSEUDONYM_KEY_LENGTH:
            raise ValueError(f"{path} must hold {PSEUDONYM_KEY_LENGTH} bytes in hex")
        return key

    def certificates(self) -> list[bytes]:
        folder = self.dir / "dscs"
        return [p.read_bytes() for p in sorted(folder.glob("*.der"))] if folder.is_dir() else []

    def dscs(self) -> list[DscInfo]:
        infos = []
        for der in self.certificates():
            d = dsc_from_der(der)
            kinds = sorted(d.kinds)
            infos.append(DscInfo(d.kid.hex(), d.country, kinds, d.not_before, d.not_after))
        return infos

    # -- changes --------------------------------------------------------------------------------

    def add(self, ders: list[bytes], *, now: int | None = None) -> Signed:
        """Trust these DSCs (each parsed and checked first) and sign the next version."""
        checked = [dsc_from_der(der) for der in ders]  # refuse the batch on any bad one
        folder = self.dir / "dscs"
        folder.mkdir(parents=True, exist_ok=True)
        added = []
        for dsc in checked:
            path = folder / f"{dsc.kid.hex()}.der"
            if not path.exists():
                path.write_bytes(dsc.der)
                added.append(dsc.kid.hex())
        return self.sign(now=now, added=added)

    def add_files(self, paths: list[Path], *, now: int | None = None) -> Signed:
        ders = []
        for path in paths:
            try:
                ders.append(read_certificate(Path(path).read_bytes()))
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        return self.add(ders, now=now)

    def import_list(self, path: Path, *, now: int | None = None) -> Signed:
        try:
            ders = read_national_list(Path(path).read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return self.add(ders, now=now)

    def sign(
        self,
        *,
        version: int | None = None,
        expires_in: int | None = None,
        now: int | None = None,
        added: list[str] | None = None,
    ) -> Signed:
        last = self.version()
        if version is None:
            version = last + 1
        elif version <= last:
            raise VersionError(f"DCC trust list version {version} is not newer than {last}")
        issued = int(time.time()) if now is None else int(now)
        ders = self.certificates()
        data = sign_dcc_trust_list(
            ders,
            pseudonym_key=self.pseudonym_key(),
            version=version,
            issued_at=issued,
            expires_at=issued + (expires_in or self.home.state.max_age_s),
            root_key=self.home.root_signing_key(),
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        _replace(self.dir / "state.json", json.dumps({"version": version}).encode())
        _replace(Path(self.home.path) / DCC_TRUST_FILE, data)
        self._deliver(data)
        return Signed(version, len(ders), added or [], str(Path(self.home.path) / DCC_TRUST_FILE))

    def _deliver(self, data: bytes) -> None:
        """Copy the list into every site gateway bundle's watched documents folder."""
        for record in self.home.state.sites.values():
            for gateway, folder in record.gateway_bundles.items():
                documents = Path(folder) / BUNDLE_DOCUMENTS_DIR
                if gateway in record.gateways and documents.is_dir():
                    _replace(documents / DCC_TRUST_FILE, data)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- command line (`chot provision dcc ...`) -----------------------------------------------------

HOME_ENV = "CHOT_HOME"  # as provisioning.cli


@dataclass(frozen=True)
class Shown:
    """What a command shows: `data` (the --json line) and, for humans, `lines`."""

    data: dict | list
    lines: "list[str | Phrase] | None" = None  # Phrases are translated when printed


def add_commands(
    psub: argparse._SubParsersAction, leaf: Callable, group: Callable, output: Callable
) -> None:
    """Register `dcc add|import|list|sign` under `chot provision` with the caller's helpers:
    `leaf` (adds --home/--json, handles errors), `group`, and `output(data, lines)` (what a
    handler returns to it). Passed in so this module never imports provisioning.cli back."""

    def handler(func: Callable[[argparse.Namespace], Shown]) -> Callable:
        def run(args: argparse.Namespace):
            shown = func(args)
            return output(shown.data, shown.lines)

        return run

    dcc = group(psub, "dcc", "EU Digital COVID Certificates: the DCC trust list (DSCs)")
    p = leaf(dcc, "add", "trust DSC certificate files and sign the next list", handler(cmd_add))
    p.add_argument("certs", nargs="+", type=Path, metavar="CERT", help="PEM, base64 DER or DER")
    p = leaf(dcc, "import", "trust a national backend's DSC list (JSON)", handler(cmd_import))
    p.add_argument("file", type=Path, help="JSON list of {kid, rawData (base64 DER)}")
    leaf(dcc, "list", "trusted DSCs", handler(cmd_list))
    p = leaf(dcc, "sign", "re-sign the DCC trust list (before it expires)", handler(cmd_sign))
    p.add_argument("--version", type=int, help="explicit version (must be newer)")
    p.add_argument("--expires-days", type=float, help="default: the home's max age")


def _store(args: argparse.Namespace) -> DccStore:
    from provisioning.home import OpsHome

    path = args.home or os.environ.get(HOME_ENV)
    if not path:
        raise ValueError(f"--home DIR (or ${HOME_ENV}) is required")
    return DccStore(OpsHome(path))


SIGNED = N_("DCC trust list version {version} signed: {dscs} certificates, {count} new")
WRITTEN = N_("Written to: {path}")
NEXT_STEP = N_("Next: publish it: chot provision publish")
VALIDITY = N_("valid {start} to {end}")


def signed_lines(signed: Signed) -> list[str | Phrase]:
    """What `dcc add|import|sign` tell people: the version, the count, the new kids (data)."""
    head = Phrase(
        SIGNED, {"version": signed.version, "dscs": signed.dscs, "count": len(signed.added)}
    )
    return [head, *signed.added, Phrase(WRITTEN, {"path": signed.path}), Phrase(NEXT_STEP)]


def _day(unix_s: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(unix_s))


def dsc_line(info: DscInfo) -> Phrase:
    """kid, country, pass types in words and the validity as dates (UTC)."""
    kinds = {f"k{i}": Phrase(KIND_WORDS.get(k, k)) for i, k in enumerate(info.kinds)}
    return Phrase(
        "{kid}  {country}  {kinds}  {validity}",  # layout only: the words are Phrases
        {
            "kid": info.kid,
            "country": info.country or "--",
            "kinds": Phrase(", ".join(f"{{{k}}}" for k in kinds), kinds) if kinds else "-",
            "validity": Phrase(
                VALIDITY, {"start": _day(info.not_before), "end": _day(info.not_after)}
            ),
        },
    )


def cmd_add(args: argparse.Namespace) -> Shown:
    signed = _store(args).add_files(args.certs)
    return Shown(asdict(signed), signed_lines(signed))


def cmd_import(args: argparse.Namespace) -> Shown:
    signed = _store(args).import_list(args.file)
    return Shown(asdict(signed), signed_lines(signed))


def cmd_sign(args: argparse.Namespace) -> Shown:
    expires = int(args.expires_days * 86400) if args.expires_days else None
    signed = _store(args).sign(version=args.version, expires_in=expires)
    return Shown(asdict(signed), signed_lines(signed))


def cmd_list(args: argparse.Namespace) -> Shown:
    infos = _store(args).dscs()
    return Shown([asdict(i) for i in infos], [dsc_line(i) for i in infos])
