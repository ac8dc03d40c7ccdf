"""Handlers of `chot pass issue` and `chot provision pass revoke`: signing passes for people
and taking them back (parser wiring in cli.py)."""

import argparse

from common.i18n import N_, Phrase
from provisioning.cli_base import Output, open_home


def cmd_pass_issue(args: argparse.Namespace) -> Output:
    from provisioning.issue import issue_batch, issue_single

    home = open_home(args)
    if args.csv:
        if args.doc_number or args.png:
            raise ValueError("--csv issues a batch: use --png-dir, not --doc-number/--png")
        result = issue_batch(
            home,
            args.csv,
            hours=args.hours,
            issuer=args.issuer,
            png_dir=args.png_dir,
            pdf=args.pdf,
            print_name=args.print_name,
        )
        return Output(result, [p["qr_text"] for p in result["passes"]])
    if not args.doc_number:
        raise ValueError("--doc-number or --csv is required")
    result = issue_single(
        home,
        kind=args.kind,
        doc_number=args.doc_number,
        hours=args.hours,
        issuer=args.issuer,
        name=args.name,
        doc4=args.doc4,
        dob=args.dob,
        png=args.png,
        pdf=args.pdf,
        print_name=args.print_name,
    )
    return Output(result, [result["qr_text"]])


def cmd_pass_revoke(args: argparse.Namespace) -> Output:
    home = open_home(args)
    if args.doc_number:  # the issuing ledger finds the person's passes (provisioning/subject.py)
        from provisioning.subject import revoke_person

        if args.ref or args.ref_option:
            raise ValueError("give a pass reference or --doc-number, not both")
        revoked = revoke_person(home, args.doc_number)
        refs = [p.pass_ref.hex() for p in revoked]
        return Output(
            {"revoked": refs, "revocation_version": home.state.revocation_version},
            [Phrase(N_("live passes revoked: {count}"), {"count": len(refs)}), *refs],
        )
    args.ref = args.ref or args.ref_option
    if not args.ref:
        raise ValueError("a pass reference (or --ref, or --doc-number) is required")
    home.revoke_pass(args.ref)
    return Output(
        {"revoked": args.ref.replace(" ", ""), "revocation_version": home.state.revocation_version}
    )
