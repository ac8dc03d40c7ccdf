"""EU DCCs through a whole site (issue #17): ops trusts test DSCs with `chot provision dcc add`,
which delivers the signed DCC trust list to the gateway bundle; the gateway republishes it
retained on chot/v1/{site}/dcc-trust and a unit (`chot device run`, its bundle holds no DCC list)
adopts it over MQTT. The unit then decides valid and hostile HC1: codes; events reach the gateway
and the centre with `kind` and the keyed pseudonym `sub`, and neither store holds the
certificate identifier, the name or the birth date anywhere in its files."""

import datetime as dt
from pathlib import Path

import cbor2
import pytest

from chot.cli import main as chot_main
from harness import dcc_pki
from harness.e2e.site import E2ESite
from harness.polling import wait_until
from protocol.dcc import ALG_ES256, ALG_PS256, pseudonym
from provisioning.dcc import DccStore

DAY = 86400
PERSONAL = ("NGUYEN", "Nguyễn", "VAN<AN", "Văn An", "1985-04-12")


def day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def moment(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scans(now: int, signers: dict[str, dcc_pki.Signer]) -> list[tuple[str, str, str, str | None]]:
    """(QR text, ci, expected reason, expected kind), each a distinct certificate."""
    fresh = {"iat": now - 10 * DAY, "exp": now + 300 * DAY}

    def vac(ci: str, signer: str, **cwt) -> str:
        hcert = dcc_pki.vaccination(ci=ci, dt=day(now - 60 * DAY))
        return dcc_pki.make_dcc(signers[signer], hcert, **(fresh | cwt))

    def test(ci: str, signer: str) -> str:
        hcert = dcc_pki.lab_test(ci=ci, sc=moment(now - 5 * 3600))
        return dcc_pki.make_dcc(signers[signer], hcert, **fresh)

    recovery = dcc_pki.recovery(
        ci="URN:UVCI:01:VN:E2ERECOV01#3",
        fr=day(now - 40 * DAY),
        df=day(now - 29 * DAY),
        du=day(now + 150 * DAY),
    )
    tampered = dcc_pki.vaccination(ci="URN:UVCI:01:VN:E2ETAMPER1#7", dt=day(now - 60 * DAY))
    out = [
        (vac("URN:UVCI:01:VN:E2EVACC001#1", "es"), "ok", "vaccination"),
        (test("URN:UVCI:01:VN:E2ETEST001#2", "ps"), "ok", "test"),
        (dcc_pki.make_dcc(signers["es"], recovery, **fresh), "ok", "recovery"),
        (vac("URN:UVCI:01:VN:E2EEXPIRE1#4", "es", exp=now - DAY), "expired", "vaccination"),
        (vac("URN:UVCI:01:VN:E2EOLDDSC1#5", "old"), "dsc_not_in_force", "vaccination"),
        (test("URN:UVCI:01:VN:E2EEKUTST1#6", "vac_only"), "dsc_kind_not_allowed", "test"),
        (
            dcc_pki.to_qr(
                dcc_pki.sign_cose(
                    signers["ps"],
                    cbor2.dumps(dcc_pki.cwt(tampered, **fresh)),
                    tamper=True,
                )
            ),
            "bad_signature",
            None,  # claims whose signature failed are never reported
        ),
    ]
    cis = [
        "URN:UVCI:01:VN:E2EVACC001#1",
        "URN:UVCI:01:VN:E2ETEST001#2",
        "URN:UVCI:01:VN:E2ERECOV01#3",
        "URN:UVCI:01:VN:E2EEXPIRE1#4",
        "URN:UVCI:01:VN:E2EOLDDSC1#5",
        "URN:UVCI:01:VN:E2EEKUTST1#6",
        "URN:UVCI:01:VN:E2ETAMPER1#7",
    ]
    return [(text, ci, reason, kind) for (text, reason, kind), ci in zip(out, cis, strict=True)]


def files_bytes(*paths: Path) -> bytes:
    """Every byte a store keeps: the database and its journal files."""
    data = b""
    for path in paths:
        for extra in ("", "-wal", "-journal", "-shm"):
            candidate = path.with_name(path.name + extra)
            if candidate.is_file():
                data += candidate.read_bytes()
    return data


@pytest.fixture
def dcc_site(tmp_path: Path):
    site = E2ESite(tmp_path, devices=1)
    try:
        yield site
    finally:
        site.close()


def test_dcc_through_a_site(dcc_site: E2ESite, tmp_path: Path) -> None:
    site, now = dcc_site, dcc_site.now
    ca = dcc_pki.DccCa()
    validity = {"not_before": now - 300 * DAY, "not_after": now + 300 * DAY}
    signers = {
        "es": dcc_pki.make_signer(ca, ALG_ES256, **validity),
        "ps": dcc_pki.make_signer(ca, ALG_PS256, **validity),
        "old": dcc_pki.make_signer(ca, not_before=now - 400 * DAY, not_after=now - 30 * DAY),
        "vac_only": dcc_pki.make_signer(
            ca, eku=(dcc_pki.EKU_OIDS["vaccination"],), cn="vaccination-only DSC", **validity
        ),
    }
    certs = []
    for name, signer in signers.items():
        path = tmp_path / f"{name}.der"
        path.write_bytes(signer.der)
        certs.append(str(path))
    home = site.site.home
    assert chot_main(["provision", "dcc", "add", "--home", str(home.path), *certs]) == 0
    bundled = site.site.gateway_config.parent / "documents" / "dcc-trust.cose"
    assert bundled.is_file(), "dcc add delivers the list into the gateway bundle"
    unit = site.devices[0]
    held = unit.config.parent / "state" / "dcc-trust.cose"
    assert not held.exists()

    site.start()
    wait_until(held.is_file, 30, message="the unit to adopt the DCC trust list over MQTT")
    assert held.read_bytes() == bundled.read_bytes()

    cases = scans(now, signers)
    unit.feed([text for text, *_ in cases], rate=2.0)
    unit.join_feed(30)

    def gateway_rows():
        rows = site.gateway_query(
            "SELECT seq, verdict, reason, kind FROM events WHERE dev = ? AND typ = 'scan' "
            "ORDER BY seq",
            (unit.id,),
        )
        return rows if len(rows) >= len(cases) else None

    rows = wait_until(gateway_rows, 60, message="every DCC decision at the gateway")
    got = [(reason, kind) for _seq, _verdict, reason, kind in rows]
    assert got == [(reason, kind) for _t, _ci, reason, kind in cases]
    assert [verdict for _s, verdict, _r, _k in rows] == ["pass"] * 3 + ["fail"] * 4

    site.wait_at_centre()
    central = site.central_fetch(
        "SELECT seq, reason, kind, sub FROM events WHERE typ = 'scan' ORDER BY seq"
    )
    psk = DccStore(home).pseudonym_key()
    for row, (_text, ci, reason, kind) in zip(central, cases, strict=True):
        assert (row["reason"], row["kind"]) == (reason, kind)
        if reason in ("ok", "expired", "dsc_not_in_force", "dsc_kind_not_allowed"):
            # signed by a trusted DSC (checked or not): named by the keyed pseudonym of ci
            assert bytes(row["sub"]) == pseudonym(psk, ci)
        else:
            assert not row["sub"], "an unverified certificate is named by nobody"

    # Privacy: neither store's files hold the certificate identifier, name or birth date.
    stored = {
        "gateway": files_bytes(site.gateway_db),
        "centre": files_bytes(Path(site.site.central_url.removeprefix("sqlite:///"))),
    }
    for where, data in stored.items():
        assert len(data) > 10_000, f"{where}: store files not found"
        for _text, ci, _reason, _kind in cases:
            assert ci.encode() not in data, f"{where} holds a certificate identifier"
        for secret in PERSONAL:
            assert secret.encode() not in data, f"{where} holds {secret!r}"
