"""Central operator credentials for health staff: `chot provision operator add NAME --role
tracer|report|ops` and `operator revoke NAME`.

The token is random (256 bits) and goes only into the credential file handed to the person
(0600, `--out`, JSON read by `chot central … --credential FILE`); the home keeps its SHA-256,
name and role in ``HOME/central/operators.json``, the centre's operator registry. Deploy: copy
that file beside the central config and name it there (``operators_file =
"operators.json"``); the centre re-reads it when it changes, so a revoke is in force as soon as
the new file is in place. A file rather than a published document: it holds no secret the
centre does not already hold, needs no new signed-document kind, and a revoke needs no
running centre to accept it.
"""

import argparse
import json
import secrets
import time
from pathlib import Path

from central.config import hash_token
from central.operators import REGISTRY_FORMAT, ROLE_GRANTS, Credential
from provisioning.errors import OpsError
from provisioning.secrets import write_secret

REGISTRY_PATH = Path("central") / "operators.json"
NAME_PATTERN = "abcdefghijklmnopqrstuvwxyz0123456789-_."


def registry_path(home: Path) -> Path:
    return Path(home) / REGISTRY_PATH


def _load(path: Path) -> dict:
    if not path.exists():
        return {"format": REGISTRY_FORMAT, "operators": {}}
    data = json.loads(path.read_text())
    if data.get("format") != REGISTRY_FORMAT:
        raise OpsError(f"{path} is not a chot operator registry")
    return data


def _save(path: Path, data: dict) -> None:
    # 0600 like every file of the home; replaced atomically so the centre never reads half
    write_secret(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), replace=True)


def add_operator(home: Path, name: str, role: str, out: Path, central: str | None = None) -> dict:
    """A new credential: the token into `out` (0600, never overwritten), its hash to the home."""
    if role not in ROLE_GRANTS:
        raise OpsError(f"role must be one of {', '.join(ROLE_GRANTS)}")
    if not name or set(name.lower()) - set(NAME_PATTERN) or len(name) > 64:
        raise OpsError("operator names use letters, digits, '-', '_' and '.' (at most 64)")
    path = registry_path(home)
    data = _load(path)
    held = data["operators"].get(name)
    if held is not None and not held.get("revoked"):
        raise OpsError(f"operator {name} already holds a credential: revoke it first")
    token = secrets.token_urlsafe(32)
    write_secret(
        out, (json.dumps(Credential(name, role, token, central).to_json()) + "\n").encode()
    )
    data["operators"][name] = {
        "token_sha256": hash_token(token),
        "role": role,
        "roles": list(ROLE_GRANTS[role]),
        "issued_at": int(time.time()),
        "revoked": False,
    }
    _save(path, data)
    return {"operator": name, "role": role, "credential": str(out), "registry": str(path)}


def revoke_operator(home: Path, name: str) -> dict:
    path = registry_path(home)
    data = _load(path)
    if name not in data["operators"]:
        raise OpsError(f"no central operator {name}")
    data["operators"][name]["revoked"] = True
    _save(path, data)
    return {"operator": name, "revoked": True, "registry": str(path)}


# --- command line (provisioning/cli.py's `operator` group hands over here) ---------------------

CENTRAL_ROLES = tuple(ROLE_GRANTS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`operator add`'s central options; `operator add SITE USER` stays the gate login."""
    parser.add_argument(
        "--role",
        choices=("gate", *CENTRAL_ROLES),
        default="gate",
        help="gate: a gate operator's login for the gateway page (SITE USER); tracer, report, "
        "ops: a central operator credential (NAME) for health staff",
    )
    parser.add_argument("--out", type=Path, help="credential file (default ./NAME.credential)")
    parser.add_argument("--central", help="the centre's URL, written into the credential")


def cmd_add(args: argparse.Namespace, home_path: Path) -> dict:
    if args.user is not None:
        raise ValueError(f"--role {args.role} takes one NAME (SITE USER is for gate logins)")
    name = args.site
    return add_operator(
        home_path, name, args.role, args.out or Path(f"{name}.credential"), args.central
    )
