"""Handlers of `chot provision device|gateway|operator|broker ...`: what a site runs, its
units, its broker and the people who log in (parser wiring in cli.py)."""

import argparse
import json
import sys

from common.i18n import N_, Phrase
from provisioning import ntp
from provisioning.cli_base import Output, open_home
from provisioning.cli_words import ROLE_WORDS, word


def cmd_device_add(args: argparse.Namespace) -> Output:
    home = open_home(args)
    bundle = home.add_device(
        args.site,
        args.name,
        lane=args.lane,
        out=args.out,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        camera_source=args.camera,
        gpio_backend=args.gpio,
    )
    # the unit's time comes from its gateway, which runs beside the site broker
    ntp_file = ntp.write_device_files(bundle.folder, home.state.sites[bundle.site].broker_host)
    return Output(
        {
            "device": bundle.device_id,
            "site": bundle.site,
            "lane": bundle.lane,
            "bundle": str(bundle.folder),
            "public_key": bundle.public_key.hex(),
            "timesyncd": str(ntp_file),
        }
    )


def cmd_gateway_add(args: argparse.Namespace) -> Output:
    # checked before anything is registered: a bad subnet leaves no half-made gateway
    chrony = ntp.gateway_chrony_conf(args.ntp_allow, gps=args.gps, pps_device=args.pps)
    bundle = open_home(args).add_gateway(
        args.site,
        args.name,
        out=args.out,
        central_url=args.central_url,
        broker_port=args.broker_port,
        web_hosts=args.web_host,
        web_cert=args.web_cert,
        web_key=args.web_key,
    )
    ntp_file = ntp.write_gateway_files(bundle.folder, chrony)
    return Output(
        {
            "gateway": bundle.gateway_id,
            "site": bundle.site,
            "bundle": str(bundle.folder),
            "public_key": bundle.public_key.hex(),
            "chrony": str(ntp_file),
        }
    )


def cmd_revoke_unit(args: argparse.Namespace) -> Output:
    home = open_home(args)
    home.revoke_device(args.id)
    data = {"revoked": args.id, "revocation_version": home.state.revocation_version}
    next_step = N_("publish it: chot provision publish (the gateway removes its broker login)")
    return Output(
        {**data, "next": next_step},
        [
            Phrase(
                N_("Revoked: {id} (revocation list version {version})"),
                {"id": args.id, "version": data["revocation_version"]},
            ),
            Phrase(N_("Next: {step}"), {"step": Phrase(next_step)}),
        ],
    )


def cmd_device_list(args: argparse.Namespace) -> Output:
    signers = [
        {
            "id": s.id,
            "site": s.site,
            "role": s.role,
            "lane": s.lane,
            "revoked": s.revoked,
            "public_key": s.public_key.hex(),
        }
        for s in open_home(args).registry()
    ]
    lines = [  # layout only: the words in it are translated Phrases
        Phrase(
            "{id:<20} {site:<8} {role:<8} {state}",
            {
                **s,
                "role": word(ROLE_WORDS, s["role"]),
                "state": Phrase(N_("REVOKED") if s["revoked"] else N_("active")),
            },
        )
        for s in signers
    ]
    return Output(signers, lines)


def cmd_operator_add(args: argparse.Namespace) -> Output:
    import getpass

    from provisioning import operators

    if args.role != "gate":  # a central credential for health staff
        return Output(operators.cmd_add(args, open_home(args).path))
    if args.user is None:
        raise ValueError("a gate operator needs SITE USER (or --role tracer|report|ops NAME)")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    path = open_home(args).add_operator(args.site, args.user, password)
    return Output({"operator": args.user, "site": args.site, "users_file": str(path)})


def cmd_operator_revoke(args: argparse.Namespace) -> Output:
    from provisioning.operators import revoke_operator

    return Output(revoke_operator(open_home(args).path, args.name))


def cmd_broker_config(args: argparse.Namespace) -> Output:
    from provisioning.broker import write_broker_config

    conf = write_broker_config(
        open_home(args),
        args.site,
        args.out,
        install_dir=args.install_dir,
        hosts=args.host,
        plugin=args.plugin,
        arch=args.arch,
    )
    return Output({"site": args.site, "config": str(conf), "folder": str(conf.parent)})


def cmd_broker_check(args: argparse.Namespace) -> Output:
    from provisioning.broker import check_broker

    report = check_broker(open_home(args), args.site, args.dir)
    verdict = Phrase(N_("The broker works") if report["ok"] else N_("The broker check failed"))
    details = json.dumps(report, sort_keys=True, indent=2)
    return Output(report, [verdict, details], 0 if report["ok"] else 1)
