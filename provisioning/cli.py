"""`chot provision ...` (the ops team's tool) and `chot pass issue`: the parser and the printer.

Every command takes `--json`; none prints a secret (keys, passwords, tokens, document numbers)
and none overwrites a key. Exit codes: 0 done, 1 refused, 2 usage error. Handlers return an
`Output` (cli_base.py; data, optional human lines, exit code); `_handler` prints it, one way
for all. The handlers, by command group:

    cli_keys.py    init, issuer ..., trust sign, revocations sign
    cli_passes.py  pass issue, pass revoke
    cli_sites.py   device ..., gateway ..., operator ..., broker ...
"""

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from common.i18n import N_, Phrase, cli_translator
from protocol.trust import PASS_KINDS
from provisioning.cli_base import HOME_ENV, Handler, Output, open_home
from provisioning.cli_keys import (
    cmd_default,
    cmd_init,
    cmd_issuer_add,
    cmd_issuer_create,
    cmd_issuer_list,
    cmd_issuer_revoke,
    cmd_retire,
    cmd_sign,
)
from provisioning.cli_passes import cmd_pass_issue, cmd_pass_revoke
from provisioning.cli_sites import (
    cmd_broker_check,
    cmd_broker_config,
    cmd_device_add,
    cmd_device_list,
    cmd_gateway_add,
    cmd_operator_add,
    cmd_operator_revoke,
    cmd_revoke_unit,
)
from provisioning.cli_words import human_lines
from provisioning.errors import OpsError
from provisioning.secrets import SecretExists

__all__ = ["HOME_ENV", "Output", "add_commands", "add_pass_issue"]


def _handler(func: Handler) -> Callable[[argparse.Namespace], int]:
    """Print the handler's output; turn refusals into exit 1 and bad input into exit 2, with
    one line on stderr."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            out = func(args)
        except (OpsError, SecretExists) as exc:
            refused = Phrase(N_("chot: refused: {error}"), {"error": exc})
            print(refused.render(cli_translator()), file=sys.stderr)
            return 1
        except (ValueError, OSError) as exc:
            print(f"chot: {exc}", file=sys.stderr)
            return 2
        _print(out, as_json=args.json)
        return out.code

    return run


def _print(out: Output, *, as_json: bool) -> None:
    """JSON with English keys; for people, lines in the command line's language."""
    lines = None if as_json else human_lines(out.data, out.lines, cli_translator())
    if as_json:
        print(json.dumps(out.data, sort_keys=True))
    elif lines is not None:
        for line in lines:
            print(line)
    else:
        print(json.dumps(out.data, sort_keys=True, indent=2))


def _leaf(sub, name: str, help_: str, func: Handler, home: bool = True) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_)
    if home:
        parser.add_argument("--home", type=Path, help=f"ops home folder (default ${HOME_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_handler(func))
    return parser


def _group(sub, name: str, help_: str):
    return sub.add_parser(name, help=help_).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND"
    )


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    if not kinds or set(kinds) - set(PASS_KINDS):
        raise argparse.ArgumentTypeError(f"comma-separated among {','.join(PASS_KINDS)}")
    return kinds


def _max_hours(value: str) -> tuple[str, int]:
    kind, sep, hours = value.partition("=")
    try:
        seconds = round(float(hours) * 3600)
    except ValueError:
        seconds = 0
    if not sep or kind not in PASS_KINDS or seconds <= 0:
        raise argparse.ArgumentTypeError(f"KIND=HOURS, KIND among {','.join(PASS_KINDS)}")
    return kind, seconds


def _add_max_hours(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-hours",
        type=_max_hours,
        action="append",
        default=[],
        metavar="KIND=H",
        help="longest validity of this issuer's passes of KIND, signed into the trust list "
        "(defaults: declaration=72 test=72 vaccination=8760 recovery=4320)",
    )


# --- registration -----------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("provision", help="ops: keys, trust lists, devices, gateways, broker")
    psub = group.add_subparsers(dest="provision_command", required=True, metavar="COMMAND")

    p = _leaf(
        psub, "init", "create an ops home: root key, issuer key, signed lists", cmd_init, home=False
    )
    p.add_argument("dir", type=Path)
    p.add_argument("--issuer", default="VN-HN", help="issuer id of the first issuer key")
    p.add_argument("--kinds", type=_kinds, default=PASS_KINDS)
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="seal the root key with a passphrase ($CHOT_PASSPHRASE or a prompt)",
    )
    p.add_argument("--max-age-days", type=float, default=7, help="signed lists expire after")

    issuer = _group(psub, "issuer", "issuer keys: create, add, list, retire, revoke")
    p = _leaf(issuer, "create", "new issuer key held by this home (rotation)", cmd_issuer_create)
    p.add_argument("--issuer", required=True)
    p.add_argument("--kinds", type=_kinds, default=PASS_KINDS)
    _add_max_hours(p)
    p = _leaf(issuer, "add", "trust another authority's issuer key", cmd_issuer_add)
    p.add_argument("--issuer", required=True)
    p.add_argument("--public-key", required=True, help="Ed25519 public key, 64 hex digits")
    p.add_argument("--kinds", type=_kinds, default=PASS_KINDS)
    p.add_argument("--not-before", type=int, default=0, help="Unix time")
    _add_max_hours(p)
    p = _leaf(
        issuer, "default", "the issuer `pass issue` uses when several are active", cmd_default
    )
    p.add_argument("issuer", nargs="?", help="issuer id (omit with --clear)")
    p.add_argument("--clear", action="store_true", help="no default: --issuer is required")
    _leaf(issuer, "list", "issuer keys with status", cmd_issuer_list)
    p = _leaf(issuer, "retire", "stop issuing with a key (its passes stay valid)", cmd_retire)
    p.add_argument("kid", help="kid hex (a unique prefix is enough)")
    p = _leaf(issuer, "revoke", "a compromised key: refuse all its passes", cmd_issuer_revoke)
    p.add_argument("kid")

    for name, what in (("trust", "trust list"), ("revocations", "revocation list")):
        g = _group(psub, name, f"the signed {what}")
        p = _leaf(g, "sign", f"sign the next {what} version", cmd_sign)
        p.add_argument("--out", type=Path, help="also write it here")
        p.add_argument("--version", type=int, help="explicit version (must be newer)")
        p.add_argument("--expires-days", type=float, help="default: the home's max age")
        p.set_defaults(document=name)

    g = _group(psub, "pass", "pass revocation")
    p = _leaf(g, "revoke", "revoke a pass by its reference, or all of a person's", cmd_pass_revoke)
    p.add_argument("ref", nargs="?", help="pass reference, 32 hex digits (spaces allowed)")
    p.add_argument("--ref", dest="ref_option", help="the same, as an option")
    p.add_argument(
        "--doc-number", help="revoke every live pass of this ID document number (only hashed)"
    )

    from provisioning import subject

    subject.add_commands(psub, _leaf, Output, open_home)

    from provisioning import dcc

    dcc.add_commands(psub, _leaf, _group, Output)

    from provisioning import publish

    publish.add_command(psub, _leaf, Output)

    from provisioning import site_policy

    site_policy.add_command(psub, _leaf, _group, Output, open_home)

    device = _group(psub, "device", "scanner units")
    p = _leaf(device, "add", "create a device identity and SD-card bundle", cmd_device_add)
    p.add_argument("site")
    p.add_argument("name", help="device id, e.g. hn01-lane1")
    p.add_argument("--lane", help="lane name (default lane-1)")
    p.add_argument("--out", type=Path, help="bundle folder (default HOME/bundles/NAME)")
    p.add_argument("--broker-host", help="site broker host name (remembered for the site)")
    p.add_argument("--broker-port", type=int)
    p.add_argument("--camera", default="picamera2", help="camera source in the config")
    p.add_argument("--gpio", default="rpigpio", help="gpio backend in the config")
    p = _leaf(device, "revoke", "revoke a device everywhere", cmd_revoke_unit)
    p.add_argument("id")
    _leaf(device, "list", "registered devices and gateways", cmd_device_list)

    gateway = _group(psub, "gateway", "site gateways")
    p = _leaf(gateway, "add", "create a gateway identity, token and bundle", cmd_gateway_add)
    p.add_argument("site")
    p.add_argument("name", help="gateway id, e.g. hn01-gw")
    p.add_argument("--out", type=Path)
    p.add_argument("--central-url", default="http://127.0.0.1:8600")
    p.add_argument("--broker-port", type=int)
    p.add_argument(
        "--web-host",
        action="append",
        default=[],
        help="name or IP operators use for the status page (repeat); localhost is added",
    )
    p.add_argument("--web-cert", type=Path, help="your own status page certificate (PEM)")
    p.add_argument("--web-key", type=Path, help="its private key (PEM), with --web-cert")
    p.add_argument(
        "--ntp-allow",
        action="append",
        default=[],
        metavar="SUBNET",
        help="subnet whose scanners take their time from this gateway (repeat; default:"
        " the private ranges)",
    )
    p.add_argument("--gps", action="store_true", help="chrony reads a GPS clock from gpsd")
    p.add_argument("--pps", metavar="DEVICE", help="and its pulse per second, e.g. /dev/pps0")
    p = _leaf(gateway, "revoke", "revoke a gateway everywhere", cmd_revoke_unit)
    p.add_argument("id")

    operator = _group(psub, "operator", "gate operators' logins; health staff's credentials")
    p = _leaf(operator, "add", "add an operator (argon2id hash) or credential", cmd_operator_add)
    p.add_argument("site", metavar="SITE|NAME")
    p.add_argument("user", nargs="?", help="gate operator's user name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    from provisioning import operators

    operators.add_arguments(p)  # --role tracer|report|ops: a central credential
    p = _leaf(operator, "revoke", "revoke a central operator's credential", cmd_operator_revoke)
    p.add_argument("name")

    broker = _group(psub, "broker", "the site's Mosquitto")
    p = _leaf(broker, "config", "generate the complete broker configuration", cmd_broker_config)
    p.add_argument("site")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--install-dir", type=Path, help="where the folder will live on the gateway")
    p.add_argument("--host", action="append", default=[], help="extra name/IP for the cert")
    p.add_argument(
        "--arch",
        choices=["arm64", "amd64", "armhf"],
        help="the broker machine's Debian architecture, for the dynamic-security plugin's "
        "path (default arm64: a Raspberry Pi gateway)",
    )
    p.add_argument("--plugin", help="mosquitto_dynamic_security.so's path on the broker machine")
    p = _leaf(broker, "check", "start mosquitto with the config and probe it", cmd_broker_check)
    p.add_argument("site")
    p.add_argument("--dir", type=Path, help="a folder from `broker config` (default: fresh)")


def add_pass_issue(pass_sub: argparse._SubParsersAction) -> None:
    """`chot pass issue`, added to the lead's `pass` group."""
    p = _leaf(pass_sub, "issue", "sign passes: one, or a batch from CSV", cmd_pass_issue)
    p.add_argument("--kind", choices=PASS_KINDS, default="declaration")
    p.add_argument("--doc-number", help="ID document number (only hashed, never stored)")
    p.add_argument("--csv", type=Path, help="batch: columns doc_number,kind[,name,doc4,dob]")
    p.add_argument("--hours", type=float, default=72)
    p.add_argument(
        "--issuer",
        help="issuer id or kid prefix (needed when several issuers are active and no "
        "`provision issuer default` is set)",
    )
    p.add_argument("--name")
    p.add_argument("--doc4")
    p.add_argument("--dob", type=int, help="birth year")
    p.add_argument("--png", type=Path, help="write the QR image (single pass)")
    p.add_argument("--png-dir", type=Path, help="batch: one PNG per pass, named by reference")
    p.add_argument("--pdf", type=Path, help="printable A4 sheet of cards")
    p.add_argument("--print-name", action="store_true", help="print the name on the card")
