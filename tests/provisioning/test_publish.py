"""`chot provision publish` against a real central app: the newest signed lists and each
site's signed registry reach the central once; a revoked pass shows up as the next version;
nothing unchanged is re-signed; the ops token is required."""

import secrets
from pathlib import Path

from central.api import create_app
from central.backends import open_store
from central.config import CentralConfig, hash_token
from central.migrate import migrate
from protocol.documents import open_document
from protocol.registry_document import REGISTRY_TYPE, registry_from_document
from protocol.trust import open_revocation_list
from provisioning.home import OpsHome
from tests.central.server import serve
from tests.provisioning.conftest import SITE, parse_json


def _central(home: OpsHome, tmp_path: Path, token: str):
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    config = CentralConfig(
        store=store.url,
        registry=home.path / "registry.json",
        operators={"ops": {"token_sha256": hash_token(token), "roles": ["ops"]}},
        root_public_keys=[home.state.root_public_key],
    )
    return create_app(config, store)


def test_publish_then_revoke_a_pass(home: OpsHome, tmp_path: Path, run_cli) -> None:
    gw = home.add_gateway(SITE, "hn01-gw", out=tmp_path / "gw")
    home.add_device(SITE, "hn01-lane1", out=tmp_path / "dev")
    gw_token = (gw.folder / "central.token").read_text().strip()
    ops_token = secrets.token_urlsafe(16)
    token_file = tmp_path / "ops.token"
    token_file.write_text(ops_token + "\n")
    import httpx

    with serve(_central(home, tmp_path, ops_token)) as url:
        args = ("provision", "publish", "--home", home.path, "--central", url)
        code, out = run_cli(*args, "--token-file", token_file, "--json")
        assert code == 0, out
        first = {(d["scope"], d["name"]): d for d in parse_json(out)["documents"]}
        assert set(first) == {("_all", "trust"), ("_all", "revocations"), (SITE, "registry")}
        assert all(d["changed"] for d in first.values())

        ref = bytes(range(16))
        home.revoke_pass(ref.hex())
        code, out = run_cli(*args, "--token-file", token_file, "--json")
        second = {(d["scope"], d["name"]): d for d in parse_json(out)["documents"]}
        assert second[("_all", "revocations")]["changed"]
        assert second[("_all", "revocations")]["version"] == home.state.revocation_version
        # the registry did not change: not re-signed, the central already has it
        assert not second[(SITE, "registry")]["changed"]
        assert second[(SITE, "registry")]["version"] == first[(SITE, "registry")]["version"]

        gw_headers = {"Authorization": f"Bearer {gw_token}", "X-Chot-Gateway": "hn01-gw"}
        raw = httpx.get(f"{url}/api/v1/documents/_all/revocations", headers=gw_headers).content
        assert open_revocation_list(raw, home.root_keyring()).is_pass_revoked(ref)

        # a new unit: the next publish carries the next registry version, with its lane
        home.add_device(SITE, "hn01-lane2", lane="lane-2", out=tmp_path / "dev2")
        code, out = run_cli(*args, "--token-file", token_file, "--json")
        third = {(d["scope"], d["name"]): d for d in parse_json(out)["documents"]}
        assert third[(SITE, "registry")]["version"] == first[(SITE, "registry")]["version"] + 1
        raw = httpx.get(f"{url}/api/v1/documents/{SITE}/registry", headers=gw_headers).content
        doc = open_document(raw, REGISTRY_TYPE, home.root_keyring())
        assert registry_from_document(doc, SITE).signers["hn01-lane2"].lane == "lane-2"

        # no token, a wrong token: refused, exit 1
        bad = tmp_path / "bad.token"
        bad.write_text("nope\n")
        code, _ = run_cli(*args, "--token-file", bad, "--json")
        assert code == 1
