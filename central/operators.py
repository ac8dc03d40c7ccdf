"""Who may ask the centre what: operator credentials, the operator registry, identities.

A health-staff member holds a *credential file* (`chot provision operator add NAME --role
tracer|report`, 0600): their name, role, a random token and, optionally, the centre's URL.
The centre holds only the token's SHA-256 (a 256-bit random token needs no slow hash), in its
*operator registry*: the ``operators_file`` the provisioning home writes
(``HOME/central/operators.json``), copied beside the central config, plus any ``[operators]``
written inline in the config. The file is re-read when it changes, so a revoked credential is
refused at once, without a restart. Every query is logged with the identity (name, role).
"""

import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from central.config import CentralConfig, Operator, hash_token
from common.config import ConfigError, StrictModel, validate
from common.reload import ReloadingFile

log = logging.getLogger(__name__)

REGISTRY_FORMAT = "chot-central-operators-v1"
CREDENTIAL_FORMAT = "chot-operator-credential-v1"
CREDENTIAL_ENV = "CHOT_CREDENTIAL"
# the role a credential is issued for -> what it may do at the centre
ROLE_GRANTS: dict[str, tuple[str, ...]] = {
    "tracer": ("tracing", "report"),
    "report": ("report",),
    "ops": ("ops",),
}


class OperatorRegistry(StrictModel):
    """HOME/central/operators.json: hashed tokens only, never a token."""

    format: str = Field(REGISTRY_FORMAT, pattern=f"^{REGISTRY_FORMAT}$")
    operators: dict[str, Operator] = Field(default_factory=dict)


class CredentialRefused(PermissionError):
    """A missing, unknown or revoked credential, or one without the role asked for."""


@dataclass(frozen=True)
class Identity:
    """Who asks: written to the access log with every query."""

    name: str
    role: str  # the role the credential was issued for (tracer, report, ops)
    grants: tuple[str, ...]  # what it may do: tracing, report, ops

    def require(self, grant: str) -> "Identity":
        if grant not in self.grants:
            raise CredentialRefused(
                f"credential of {self.name} (role {self.role}) may not do this: "
                f"needs a {'tracer' if grant == 'tracing' else grant} credential"
            )
        return self


@dataclass(frozen=True)
class Credential:
    """What the health-staff member's file holds."""

    name: str
    role: str
    token: str
    central: str | None = None  # the centre's base URL, for the CLI over HTTP

    def to_json(self) -> dict:
        return {
            "format": CREDENTIAL_FORMAT,
            "name": self.name,
            "role": self.role,
            "token": self.token,
            "central": self.central,
        }


def read_credential(path: str | Path) -> Credential:
    """The credential file, or CredentialRefused saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CredentialRefused(f"credential {path}: {exc.strerror}") from None
    except ValueError:
        raise CredentialRefused(f"credential {path}: not a chot credential file") from None
    if not isinstance(data, dict) or data.get("format") != CREDENTIAL_FORMAT:
        raise CredentialRefused(f"credential {path}: not a chot credential file")
    try:
        return Credential(
            str(data["name"]), str(data["role"]), str(data["token"]), data.get("central")
        )
    except KeyError as exc:
        raise CredentialRefused(f"credential {path}: missing {exc.args[0]}") from None


def load_registry(path: Path) -> dict[str, Operator]:
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return validate(OperatorRegistry, data).operators


class OperatorBook:
    """The config's inline operators plus the operator registry file (re-read on change)."""

    def __init__(self, config: CentralConfig) -> None:
        self._inline = dict(config.operators)
        self._file: ReloadingFile[dict[str, Operator]] | None = None
        if config.operators_file is not None:
            self._file = ReloadingFile(
                config.operators_file,
                load_registry,
                initial={},
                name="operator registry",
                when_missing=dict,
            )

    def operators(self) -> dict[str, Operator]:
        return {**(self._file.get() if self._file else {}), **self._inline}

    def authenticate(self, token: str | None) -> Identity:
        """The identity of a bearer of `token`; CredentialRefused for none, unknown, revoked."""
        if not token:
            raise CredentialRefused("no operator credential given")
        return self.by_hash(hash_token(token))

    def by_hash(self, digest: str) -> Identity:
        """The same check by the token's hash (a browser session keeps only the hash)."""
        for name, entry in self.operators().items():
            if hmac.compare_digest(entry.token_sha256, digest):
                if entry.revoked:
                    log.warning("operator %s refused: credential revoked", name)
                    raise CredentialRefused(f"the credential of {name} was revoked")
                role = entry.role or "+".join(entry.roles)
                return Identity(name, role, tuple(entry.roles))
        log.warning("operator refused: unknown credential")
        raise CredentialRefused("unknown credential: not in the centre's operator registry")

    def check(self, credential: Credential, grant: str) -> Identity:
        """The CLI's check when it opens the store itself: the file's token, by the registry."""
        identity = self.authenticate(credential.token)
        if identity.name != credential.name:
            raise CredentialRefused("the credential's name does not match the registry")
        return identity.require(grant)


def credential_path(given: Path | None, environ: Callable[[str], str | None]) -> Path:
    """--credential FILE, else $CHOT_CREDENTIAL; CredentialRefused when neither is set."""
    value = given or environ(CREDENTIAL_ENV)
    if not value:
        raise CredentialRefused(
            f"this query needs your operator credential: --credential FILE or ${CREDENTIAL_ENV}"
            " (issued by `chot provision operator add NAME --role tracer|report`)"
        )
    return Path(value)
