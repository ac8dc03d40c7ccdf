"""The central's document relay: ops PUTs signed documents (role ops), gateways GET what is
newer for their site (ETag / If-None-Match -> 304); signatures, names, sites and rollbacks are
checked here as at every hop. SQLite and PostgreSQL alike."""

import time

import pytest
from fastapi.testclient import TestClient
from nacl.signing import SigningKey

from central.api import create_app
from central.config import hash_token
from protocol.registry import Registry, Signer
from protocol.registry_document import sign_site_registry
from protocol.trust import sign_revocation_list, sign_trust_list
from tests.central.fixtures import Fleet, headers

OPS_TOKEN = "ops-publish-token"
ROOT = SigningKey.generate()


def _revocations(version: int, refs: list[bytes], key: SigningKey = ROOT) -> bytes:
    now = int(time.time())
    return sign_revocation_list(
        pass_refs=refs, version=version, issued_at=now, expires_at=now + 3600, root_key=key
    )


def _client(fleet: Fleet, store) -> TestClient:
    config = fleet.config(store.url, root_public_keys=[bytes(ROOT.verify_key).hex()]).model_copy()
    config.operators["ops"] = config.operators["analyst"].model_copy(
        update={"token_sha256": hash_token(OPS_TOKEN), "roles": ["ops"]}
    )
    return TestClient(create_app(config, store))


def _ops(token: str = OPS_TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_publish_fetch_conditional_and_rollback(fleet: Fleet, store) -> None:
    with _client(fleet, store) as c:
        v1 = _revocations(1, [b"\x01" * 16])
        r = c.put("/api/v1/documents/_all/revocations", content=v1, headers=_ops())
        assert r.status_code == 200 and r.json()["changed"] and r.json()["version"] == 1
        again = c.put("/api/v1/documents/_all/revocations", content=v1, headers=_ops())
        assert again.status_code == 200 and not again.json()["changed"]

        gw = headers("gw-hn")
        index = c.get("/api/v1/documents", headers=gw)
        assert index.status_code == 200
        assert [(d["name"], d["version"]) for d in index.json()["documents"]] == [
            ("revocations", 1)
        ]
        etag = index.headers["etag"]
        assert c.get("/api/v1/documents", headers={**gw, "If-None-Match": etag}).status_code == 304
        got = c.get("/api/v1/documents/_all/revocations", headers=gw)
        assert got.content == v1 and got.headers["etag"] == '"v1"'
        cached = c.get(
            "/api/v1/documents/_all/revocations", headers={**gw, "If-None-Match": '"v1"'}
        )
        assert cached.status_code == 304 and cached.content == b""

        v2 = _revocations(2, [b"\x01" * 16, b"\x02" * 16])
        assert c.put("/api/v1/documents/_all/revocations", content=v2, headers=_ops()).json()[
            "changed"
        ]
        assert c.get("/api/v1/documents", headers={**gw, "If-None-Match": etag}).status_code == 200
        # rollback: the older version, and a different document reusing version 2
        old = c.put("/api/v1/documents/_all/revocations", content=v1, headers=_ops())
        assert old.status_code == 409 and old.json()["reason"] == "rollback"
        reuse = c.put(
            "/api/v1/documents/_all/revocations", content=_revocations(2, []), headers=_ops()
        )
        assert reuse.status_code == 409
        assert c.get("/api/v1/documents/_all/revocations", headers=gw).content == v2


def test_refusals(fleet: Fleet, store) -> None:
    with _client(fleet, store) as c:
        doc = _revocations(1, [])
        assert c.put("/api/v1/documents/_all/revocations", content=doc).status_code == 401
        # a report operator and a gateway token are not the ops credential
        analyst = {"Authorization": "Bearer analyst-token"}
        put = "/api/v1/documents/_all/revocations"
        assert c.put(put, content=doc, headers=analyst).status_code == 403
        assert c.put(put, content=doc, headers=headers("gw-hn")).status_code == 401
        # signed by another key, or a trust list under the revocations name
        forged = c.put(put, content=_revocations(1, [], SigningKey.generate()), headers=_ops())
        assert forged.status_code == 422 and forged.json()["reason"] == "unknown_kid"
        now = int(time.time())
        trust = sign_trust_list([], version=1, issued_at=now, expires_at=now + 60, root_key=ROOT)
        wrong = c.put(put, content=trust, headers=_ops())
        assert wrong.status_code == 422 and wrong.json()["reason"] == "wrong_type"
        assert (
            c.put("/api/v1/documents/_all/passwords", content=doc, headers=_ops()).status_code
            == 404
        )
        # a registry signed for HCM-01 cannot be filed under HN-01
        reg = Registry()
        reg.add(Signer("dev-c", "HCM-01", "device", bytes(32), "lane-1"))
        signed = sign_site_registry(
            reg, "HCM-01", version=1, issued_at=now, expires_at=now + 60, root_key=ROOT
        )
        assert (
            c.put("/api/v1/documents/HN-01/registry", content=signed, headers=_ops()).status_code
            == 422
        )
        ok = c.put("/api/v1/documents/HCM-01/registry", content=signed, headers=_ops())
        assert ok.status_code == 200
        # a gateway sees only its own site's documents
        hn = c.get("/api/v1/documents", headers=headers("gw-hn")).json()["documents"]
        assert hn == []
        assert (
            c.get("/api/v1/documents/HCM-01/registry", headers=headers("gw-hn")).status_code == 403
        )
        hcm = c.get("/api/v1/documents/HCM-01/registry", headers=headers("gw-hcm"))
        assert hcm.status_code == 200 and hcm.content == signed
        bad_token = c.get("/api/v1/documents", headers=headers("gw-hn", "wrong"))
        assert bad_token.status_code == 401


@pytest.mark.parametrize("name", ["config.dev-a"])
def test_unit_config_must_name_its_device(fleet: Fleet, store, name: str) -> None:
    from protocol.documents import sign_document
    from protocol.trust import CONFIG_TYPE

    now = int(time.time())
    other = sign_document(CONFIG_TYPE, 1, now, now + 60, {"dev": "dev-b"}, ROOT)
    own = sign_document(CONFIG_TYPE, 1, now, now + 60, {"dev": "dev-a"}, ROOT)
    with _client(fleet, store) as c:
        url = f"/api/v1/documents/HN-01/{name}"
        assert c.put(url, content=other, headers=_ops()).status_code == 422
        assert c.put(url, content=own, headers=_ops()).status_code == 200
