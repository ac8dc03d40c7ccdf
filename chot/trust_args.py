"""`--trust / --revocations / --root-key` for commands that verify passes (`chot pass verify`,
`chot scan`): one place that finds the ops root key and opens the signed lists."""

import argparse
import os
from pathlib import Path

from common.cli import UsageError
from protocol.trust import (
    RevocationList,
    TrustList,
    open_revocation_list,
    open_trust_list,
    root_keyring,
)


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust", type=Path, help="signed trust list (trust.cose)")
    parser.add_argument("--revocations", type=Path, help="signed revocation list")
    parser.add_argument(
        "--root-key",
        action="append",
        default=[],
        metavar="HEX",
        help="ops root public key that signs the lists; repeatable; default: "
        "$CHOT_ROOT_PUBLIC_KEY, else root.pub of the ops home holding --trust",
    )


def load_trust_lists(args: argparse.Namespace) -> tuple[TrustList | None, RevocationList | None]:
    """The verified lists named on the command line, (None, None) without --trust.

    Raises UsageError (no root key, unreadable file) or ProtocolError (a list is refused)."""
    if args.trust is None:
        return None, None
    keys = _root_keys(args)
    try:
        trust = open_trust_list(args.trust.read_bytes(), keys)
        revocations = None
        if args.revocations is not None:
            revocations = open_revocation_list(args.revocations.read_bytes(), keys)
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return trust, revocations


def _root_keys(args: argparse.Namespace) -> dict[bytes, bytes]:
    hexes = list(args.root_key)
    if not hexes and os.environ.get("CHOT_ROOT_PUBLIC_KEY"):
        hexes = os.environ["CHOT_ROOT_PUBLIC_KEY"].split(",")
    if not hexes:
        hexes = _root_key_from_home(args.trust)
    if not hexes:
        raise UsageError("--trust needs the ops root public key: --root-key HEX")
    try:
        return root_keyring(bytes.fromhex(h.strip()) for h in hexes)
    except ValueError:
        raise UsageError("--root-key must be hex") from None


def _root_key_from_home(trust_file: Path) -> list[str]:
    """An ops home keeps root.pub beside its trust list: use it when verifying from the home."""
    for folder in (trust_file.parent, trust_file.parent.parent):
        pub = folder / "root.pub"
        if pub.is_file():
            return [pub.read_text().strip()]
    return []
