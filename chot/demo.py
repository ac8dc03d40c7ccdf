"""`chot demo`: the whole system on one machine (filled in by the whole-system work).

For now it provisions a throw-away ops home, issues a demo pass and verifies it offline.
"""

import argparse
import json
import tempfile
from pathlib import Path

from protocol.clock import Clock
from protocol.pass_v1 import verify_pass
from protocol.trust import open_trust_list
from provisioning.home import OpsHome


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole system on this machine")
    demo.add_argument("--workdir", type=Path, help="keep all files here (default: a temp dir)")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="chot-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        home = OpsHome.init(workdir / "ops")
        text, claims = home.issue_pass(kind="declaration", doc_number="001085012345")
        trust = open_trust_list(home.trust_list_bytes(), home.root_keyring())
        result = verify_pass(text, trust, Clock.synced(claims.iat + 60))
        print(text)
        print(json.dumps(result.public_dict()))
        return 0 if result.verdict.value == "pass" else 1
