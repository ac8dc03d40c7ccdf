"""Handlers of `chot provision init`, `issuer ...`, `trust sign` and `revocations sign`: the ops
root, the issuer keys and the two lists they sign (parser wiring in cli.py)."""

import argparse
from dataclasses import asdict

from common.i18n import N_, Phrase
from provisioning.cli_base import Output, open_home
from provisioning.cli_words import STATUS_WORDS, word


def cmd_init(args: argparse.Namespace) -> Output:
    from provisioning.home import OpsHome

    home = OpsHome.init(
        args.dir,
        issuer=args.issuer,
        kinds=args.kinds,
        encrypt=args.encrypt,
        max_age_s=int(args.max_age_days * 86400),
    )
    issuer = home.list_issuers()[0]
    return Output(
        {
            "home": str(home.path),
            "root_public_key": home.state.root_public_key,
            "issuer": issuer.issuer,
            "kid": issuer.kid,
            "trust_version": 1,
            "encrypted": bool(args.encrypt),
        }
    )


def cmd_issuer_create(args: argparse.Namespace) -> Output:
    info = open_home(args).create_issuer(
        args.issuer, kinds=args.kinds, max_validity=dict(args.max_hours)
    )
    return Output(asdict(info))


def cmd_issuer_add(args: argparse.Namespace) -> Output:
    info = open_home(args).add_external_issuer(
        args.issuer,
        bytes.fromhex(args.public_key),
        kinds=args.kinds,
        not_before=args.not_before,
        max_validity=dict(args.max_hours),
    )
    return Output(asdict(info))


def cmd_default(args: argparse.Namespace) -> Output:
    if bool(args.issuer) == bool(args.clear):
        raise ValueError("name an issuer, or --clear")
    return Output({"default_issuer": open_home(args).set_default_issuer(args.issuer)})


def cmd_issuer_list(args: argparse.Namespace) -> Output:
    issuers = [asdict(i) for i in open_home(args).list_issuers()]
    lines = [  # layout only: the words in it are translated Phrases
        Phrase(
            "{kid}  {issuer:<12} {status:<8} {origin}  {kinds}",
            {
                **i,
                "status": word(STATUS_WORDS, i["status"]),
                "origin": Phrase(N_("local") if i["local"] else N_("external")),
                "kinds": ",".join(i["kinds"]),
            },
        )
        for i in issuers
    ]
    return Output(issuers, lines)


def cmd_retire(args: argparse.Namespace) -> Output:
    return Output(asdict(open_home(args).retire_issuer(args.kid)))


def cmd_issuer_revoke(args: argparse.Namespace) -> Output:
    return Output(asdict(open_home(args).revoke_issuer(args.kid)))


def cmd_sign(args: argparse.Namespace) -> Output:
    home = open_home(args)
    expires = int(args.expires_days * 86400) if args.expires_days else None
    if args.document == "trust":
        data = home.sign_trust_list(version=args.version, expires_in=expires)
        version = home.state.trust_version
    else:
        data = home.sign_revocation_list(version=args.version, expires_in=expires)
        version = home.state.revocation_version
    if args.out:
        args.out.write_bytes(data)
    return Output(
        {
            "document": args.document,
            "version": version,
            "bytes": len(data),
            "out": str(args.out or home.path / f"{args.document}.cose"),
        }
    )
