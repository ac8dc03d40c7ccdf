"""Issuing passes: which local issuer key signs, and signing one pass within its limits.

A mixin of `OpsHome` (home.py). The ID document number only feeds the subject pseudonym (keyed
by HOME/issuer.secret); each pass issued goes into the issuing ledger (subject.py) so a person's
passes can be revoked together.
"""

import os
from typing import Any

from nacl.signing import SigningKey

from protocol.pass_v1 import PassClaims, encode_pass
from provisioning.errors import OpsError
from provisioning.home_issuers import key_entry
from provisioning.home_lists import unix_time
from provisioning.keys import load_key_file
from provisioning.passes import subject_pseudonym
from provisioning.state import HomeFiles, IssuerRecord
from provisioning.subject import record_issued


class PassIssuing(HomeFiles):
    """Signing passes with the home's issuer keys; combined into `OpsHome`."""

    def _issuer_secret(self) -> bytes:
        return bytes.fromhex((self.path / "issuer.secret").read_text().strip())

    def set_default_issuer(self, issuer: str | None) -> str | None:
        """The issuer `pass issue` uses when several are active and none is named."""
        if issuer is not None and not any(
            r.issuer == issuer and r.local and r.status == "active"
            for r in self.state.issuers.values()
        ):
            raise OpsError(f"no active issuer key held here for {issuer}")
        self.state.default_issuer = issuer
        self.save()
        return issuer

    def issuer_signing_key(self, issuer: str | None = None) -> tuple[IssuerRecord, SigningKey]:
        """The newest active local key, optionally of one issuer id or kid (prefix).

        With no issuer named and keys of more than one issuer id active here, the configured
        default issuer is used; without one this refuses and lists them: a pass signed by the
        wrong authority is worse than a question. (Several keys of one issuer id are a
        rotation: the newest signs.)"""
        active = {
            kid: r for kid, r in self.state.issuers.items() if r.local and r.status == "active"
        }
        if issuer is None:
            ids = sorted({r.issuer for r in active.values()})
            if len(ids) > 1:
                if self.state.default_issuer not in ids:
                    raise OpsError(
                        f"{len(ids)} issuers are active here ({', '.join(ids)}): name one with "
                        "--issuer, or set a default with `chot provision issuer default ISSUER`"
                    )
                issuer = self.state.default_issuer
        candidates = [
            (kid, r)
            for kid, r in active.items()
            if issuer is None or r.issuer == issuer or kid.startswith(issuer.lower())
        ]
        if not candidates:
            raise OpsError(f"no active issuer key held here for {issuer or 'any issuer'}")
        _kid, record = max(candidates, key=lambda item: item[1].not_before)
        return record, load_key_file(self.path / str(record.key_file))

    def issue_pass(self, **pass_args: Any) -> tuple[str, PassClaims]:
        """Sign one pass and put it in the issuing ledger; returns (QR text, claims).
        Arguments as for `sign_pass`."""
        qr_text, claims = self.sign_pass(**pass_args)
        record_issued(self, claims)  # the issuing ledger: revoke by person (subject.py)
        return qr_text, claims

    def sign_pass(
        self,
        *,
        kind: str,
        doc_number: str,
        hours: float = 72,
        issuer: str | None = None,
        name: str | None = None,
        doc4: str | None = None,
        dob: int | None = None,
        now: int | None = None,
        _key: tuple[IssuerRecord, SigningKey] | None = None,
    ) -> tuple[str, PassClaims]:
        """Sign one pass, NOT yet in the ledger: the caller records it (`record_issued`) before
        the pass leaves this process. The document number only feeds `sub`."""
        record, key = _key or self.issuer_signing_key(issuer)
        if kind not in record.kinds:
            raise OpsError(f"issuer {record.issuer} may not issue {kind} passes")
        if hours <= 0:
            raise OpsError("hours must be positive")
        limit_s = key_entry(record).max_validity_s(kind)
        if hours * 3600 > limit_s:
            raise OpsError(
                f"{hours:g} hours is longer than issuer {record.issuer} allows for {kind} "
                f"passes ({limit_s / 3600:g} hours); scanners would refuse it "
                "(validity_too_long). Use --hours up to that, or raise the limit with "
                "`chot provision issuer create --max-hours`"
            )
        iat = unix_time(now)
        if iat < record.not_before:
            raise OpsError("issuer key is not valid yet at that time")
        claims = PassClaims(
            iss=record.issuer,
            iat=iat,
            exp=iat + int(hours * 3600),
            cti=os.urandom(16),
            sub=subject_pseudonym(self._issuer_secret(), doc_number),
            kind=kind,
            name=name,
            doc4=doc4,
            dob=dob,
        )
        return encode_pass(claims, key), claims
