"""A real gateway fetches what ops published at the real central app: lists go out retained
to the units, a newer signed registry replaces the bundle's (a new unit's events are
accepted, its lane appears); a gateway that starts while the central is down catches up when
it is back; a rollback served by a tampered central is refused and counted."""

import time

import pytest

from gateway.app import GatewayApp
from gateway.config import parse_config
from protocol import topics
from protocol.trust import sign_revocation_list
from tests.central.server import free_port, serve
from tests.support.central_docs import central_app, publish_registry, run_in_thread
from tests.support.gateway_core import (
    ACL,
    SITE,
    USERS,
    Scanner,
    Site,
    TopicReader,
    make_event,
    wait_for,
)

NOW = int(time.time())


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site", devices=2)


def _revocations(site, version: int, refs: list[bytes]) -> bytes:
    return sign_revocation_list(
        pass_refs=refs, version=version, issued_at=NOW, expires_at=NOW + 86400, root_key=site.root
    )


def test_gateway_catches_up_adopts_registry_and_refuses_rollback(mosquitto, tmp_path, site):
    broker = mosquitto(users=USERS, acl=ACL)
    app_central, docs = central_app(tmp_path, site)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = site.config(broker, central_url=url, central={"documents_poll_s": 0.3})
    app = GatewayApp(parse_config(config)).start()
    thread = run_in_thread(app)
    reader = TopicReader(broker, ["chot/v1/#"])
    scanner = Scanner(broker)
    try:
        # the central is down: the fetcher fails and backs off, the gateway runs on
        assert wait_for(lambda: app.fetcher.stats.failures >= 2, 15)
        revs_v1 = _revocations(site, 1, [b"\x01" * 16])
        docs.put("_all", "revocations", revs_v1, by="ops")
        key = site.add_device("d09", lane="lane-9")
        publish_registry(docs, site, version=1, issued_at=NOW, expires_at=NOW + 86400)
        with serve(app_central, port=port):
            # back: both documents arrive in one round, the list retained for the units
            revs_topic = topics.revocations_topic(SITE)
            assert wait_for(lambda: reader.seen.get(revs_topic) == revs_v1, 20)
            assert wait_for(lambda: "lane-9" in app.config.lanes, 20)
            assert wait_for(lambda: "d09" in app.registry.registry.signers, 10)
            # the new unit's events are accepted and acked
            scanner.publish("d09", make_event(key, "d09", 1, lane="lane-9")[0])
            assert scanner.wait_acks({"d09": 1}) == {"d09": 1}

            # a newer list is fetched on the next round
            revs_v2 = _revocations(site, 2, [b"\x01" * 16, b"\x02" * 16])
            docs.put("_all", "revocations", revs_v2, by="ops")
            assert wait_for(lambda: reader.seen.get(revs_topic) == revs_v2, 20)

            # a tampered central serves the old list as the newest: refused, v2 stays
            docs.store.execute(
                "UPDATE documents SET version = 3, raw = :raw WHERE name = 'revocations'",
                {"raw": revs_v1},
            )
            assert wait_for(
                lambda: app.store.counters().get("document_refused.rollback", 0) >= 1, 20
            )
            assert app.fetcher.stats.refused >= 1
            assert reader.seen.get(revs_topic) == revs_v2
            assert app.distributor.current_version(revs_topic) == 2
    finally:
        reader.close()
        scanner.close()
        app.stopping.set()
        thread.join(20)
