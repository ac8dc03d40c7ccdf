"""Every command's output for people is in the command line's language (CHOT_LANG): `chot
scan`, `chot provision` (publish and dcc too), `chot pass issue`, `chot central` (cluster
too), `chot device`. Real Vietnamese
words (with their diacritics) in vi, English in en, never a raw reason code; `--json` keeps
its English keys and codes. Each command runs in a fresh interpreter, as a person starts it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import segno

from central.api import create_app
from central.backends import open_store
from central.cluster.cli import up_lines
from central.cluster.layout import Layout
from central.config import CentralConfig, hash_token
from central.ingest import ingest_batch
from central.migrate import migrate
from common.i18n import translator
from harness import dcc_pki
from protocol.reasons import Reason
from tests.central.fixtures import MIN, T0, Fleet
from tests.central.server import serve

ROOT = Path(__file__).resolve().parents[2]
CODES = sorted(r.value for r in Reason)


def chot(lang: str, *argv: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LANG")}
    env["CHOT_LANG"] = lang
    return subprocess.run(
        [sys.executable, "-m", "chot", *map(str, argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_raw_codes(text: str, lang: str) -> None:
    """In Vietnamese no reason code shows at all; in English none of the snake_case ones."""
    shown = [c for c in CODES if re.search(rf"(?<![\w/.-]){c}(?![\w/.-])", text)]
    if lang == "en":
        shown = [c for c in shown if "_" in c]
    assert not shown, f"raw reason codes in the human output: {shown}\n{text}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """An ops home, a pass as a PNG, and a scanner bundle with simulated lights."""
    folder = tmp_path_factory.mktemp("site")
    home = folder / "ops"
    assert chot("en", "provision", "init", home).returncode == 0
    gw = chot("en", "provision", "gateway", "add", "--home", home, "HN-01", "hn01-gw")
    assert gw.returncode == 0, gw.stderr
    unit = folder / "unit"
    added = chot(
        "en",
        *("provision", "device", "add", "--home", home, "HN-01", "hn01-lane1"),
        *("--out", unit, "--camera", "synthetic", "--gpio", "simulated"),
    )
    assert added.returncode == 0, added.stderr
    issued = chot("en", "pass", "issue", "--home", home, "--doc-number", "079203000123")
    assert issued.returncode == 0, issued.stderr
    qr = issued.stdout.strip()
    segno.make_qr(qr, error="m").save(str(folder / "card.png"), scale=5, border=4)
    return {"home": home, "png": folder / "card.png", "unit": unit, "qr": qr}


def scan(site: dict, lang: str, *extra: object) -> subprocess.CompletedProcess:
    home = site["home"]
    trust = ("--trust", home / "trust.cose", "--revocations", home / "revocations.cose")
    return chot(lang, "scan", *trust, *extra, site["png"])


def test_scan_in_vietnamese(site: dict) -> None:
    ok = scan(site, "vi")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{site['png']}: Hợp lệ: Hợp lệ — mời qua" + re.search(
        r" \([\d.]+ ms\)$", ok.stdout.strip()
    ).group(0)
    expired = scan(site, "vi", "--at", 4_000_000_000)
    assert "Không hợp lệ: Hết hạn — yêu cầu khai báo lại" in expired.stdout
    untrusted = chot("vi", "scan", site["png"])
    assert "Kiểm tra tay" in untrusted.stdout and "bằng tay" in untrusted.stdout
    missing = chot("vi", "scan", site["png"].with_name("none.png"))
    assert missing.returncode == 2 and "không đọc được ảnh" in missing.stdout
    for out in (ok, expired, untrusted, missing):
        no_raw_codes(out.stdout, "vi")


def test_scan_in_english_and_json_unchanged(site: dict) -> None:
    expired = scan(site, "en", "--at", 4_000_000_000)
    assert ": Refused: Expired — ask the person to declare again (" in expired.stdout
    no_raw_codes(expired.stdout, "en")
    for lang in ("vi", "en"):
        record = json.loads(scan(site, lang, "--json", "--at", 4_000_000_000).stdout)
        assert (record["verdict"], record["reason"], record["decoded"]) == ("fail", "expired", True)
        assert set(record) == {"file", "decoded", "verdict", "reason", "ms"}


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        (
            "vi",
            [
                "Thư mục vận hành: ",
                "Khóa công khai gốc: ",
                "Khóa gốc được khóa bằng mật khẩu: không",
            ],
        ),
        ("en", ["Ops home: ", "Root public key: ", "Root key sealed with a passphrase: no"]),
    ],
)
def test_provision_in_the_command_lines_language(
    site: dict, tmp_path: Path, lang: str, words: list[str]
) -> None:
    made = chot(lang, "provision", "init", tmp_path / "ops")
    assert made.returncode == 0, made.stderr
    for word in words:
        assert word in made.stdout
    listed = chot(lang, "provision", "issuer", "list", "--home", site["home"]).stdout
    assert ("đang dùng" in listed and "tại đây" in listed) if lang == "vi" else " active " in listed
    units = chot(lang, "provision", "device", "list", "--home", site["home"]).stdout
    assert ("máy quét" if lang == "vi" else "scanner") in units
    again = chot(lang, "provision", "init", tmp_path / "ops")
    assert again.returncode == 1
    assert again.stderr.startswith("chot: bị từ chối: " if lang == "vi" else "chot: refused: ")
    data = json.loads(chot(lang, "provision", "init", tmp_path / "other", "--json").stdout)
    assert set(data) == {"home", "root_public_key", "issuer", "kid", "trust_version", "encrypted"}


def test_provision_revoke_lines_and_json(site: dict, tmp_path: Path) -> None:
    home = tmp_path / "ops"
    chot("en", "provision", "init", home)
    chot("en", "pass", "issue", "--home", home, "--doc-number", "079203000999")
    vi = chot("vi", "provision", "pass", "revoke", "--home", home, "--doc-number", "079203000999")
    assert vi.returncode == 0 and vi.stdout.startswith("số thẻ còn hiệu lực đã thu hồi: 1\n")
    en = chot("en", "provision", "pass", "revoke", "--home", home, "--doc-number", "079203000999")
    assert en.stdout.strip() == "live passes revoked: 0"
    spare = ("--home", site["home"], "HN-01", "hn01-gw2")
    assert chot("en", "provision", "gateway", "add", *spare).returncode == 0
    cut = chot("vi", "provision", "gateway", "revoke", "--home", site["home"], "hn01-gw2")
    assert cut.stdout.splitlines()[0].startswith("Đã thu hồi: hn01-gw2 (danh sách thu hồi")
    assert cut.stdout.splitlines()[1].startswith("Bước tiếp theo: công bố thay đổi: ")
    spare = ("--home", site["home"], "HN-01", "hn01-gw3")
    assert chot("en", "provision", "gateway", "add", *spare).returncode == 0
    cut = chot("vi", "provision", "gateway", "revoke", *spare[:2], "hn01-gw3", "--json")
    next_step = "publish it: chot provision publish (the gateway removes its broker login)"
    assert json.loads(cut.stdout) | {"revocation_version": 0} == {
        "revoked": "hn01-gw3",
        "revocation_version": 0,
        "next": next_step,
    }


@pytest.fixture(scope="module")
def central_store(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("central")
    fleet = Fleet.create(folder)
    url = f"sqlite:///{folder}/central.db"
    with open_store(url) as store:
        migrate(store)
        items = [fleet.scan("dev-a", T0 + i * 10 * MIN, i) for i in range(3)]
        items.append(fleet.scan("dev-b", T0, 7, verdict="fail", reason="revoked"))
        ingest_batch(items, fleet.registry.signers["gw-hn"], fleet.registry, store, T0)
    return url


def test_central_tables_in_vietnamese_and_english(central_store: str) -> None:
    period = ("--from", "2021-08-01", "--to", "2021-08-02")
    vi = chot("vi", "central", "health", "--store", central_store, *period)
    assert vi.returncode == 0, vi.stderr
    head = re.split(r"\s{2,}", vi.stdout.splitlines()[0])
    assert head[:3] == ["Máy quét", "Điểm chốt", "Giờ"] and "Giờ đúng" in head
    assert "2021-08-01T07:00+07:00" in vi.stdout  # the site's hour, not UTC
    en = chot("en", "central", "health", "--store", central_store, *period)
    assert re.split(r"\s{2,}", en.stdout.splitlines()[0])[:3] == ["Scanner", "Site", "Hour"]
    stats = chot("vi", "central", "stats", "--store", central_store)
    assert stats.stdout.startswith("Sự kiện tại trung tâm: 4; trùng lặp: 0; ")
    assert "Hợp lệ: 3" in stats.stdout and "Không hợp lệ: 1" in stats.stdout
    for out in (vi, stats):
        no_raw_codes(out.stdout, "vi")
    data = json.loads(chot("vi", "central", "stats", "--store", central_store, "--json").stdout)
    assert data["by_verdict"] == {"pass": 3, "fail": 1}


def test_device_lines(site: dict) -> None:
    config = site["unit"] / "device.toml"
    off = chot("vi", "device", "lights-off", "--config", config)
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "Đã tắt đèn báo (4 chân)"
    assert chot("en", "device", "lights-off", "--config", config).stdout.strip() == (
        "Indicator lights off (4 pins)"
    )
    bad = chot("vi", "device", "run", "--config", site["unit"] / "missing.toml")
    assert bad.returncode == 2 and "cấu hình máy quét bị từ chối: " in bad.stderr


def test_publish_lines(site: dict, tmp_path: Path) -> None:
    """published / unchanged / refused, in words; --json as it was."""
    home = site["home"]
    root_key = json.loads((home / "ops.json").read_text())["root_public_key"]
    token = tmp_path / "ops.token"
    token.write_text("ops-token-for-this-test\n")
    store = open_store(f"sqlite:///{tmp_path}/central.db")
    migrate(store)
    config = CentralConfig(
        store=store.url,
        registry=home / "registry.json",
        operators={
            "ops": {"token_sha256": hash_token("ops-token-for-this-test"), "roles": ["ops"]}
        },
        root_public_keys=[root_key],
    )
    with serve(create_app(config, store)) as url:
        publish = ("provision", "publish", "--home", home, "--central", url, "--token-file", token)
        first = chot("vi", *publish)
        assert first.returncode == 0, first.stderr
        assert "_all/trust: đã công bố phiên bản 1\n" in first.stdout
        assert "HN-01/registry: đã công bố phiên bản 1\n" in first.stdout
        again = chot("en", *publish)
        assert "_all/trust: version 1 unchanged (the centre already has it)\n" in again.stdout
        assert chot("vi", *publish).stdout.startswith("_all/trust: phiên bản 1 không đổi (trung")
        bad = home / "configs" / "hn01-lane1.cose"
        bad.parent.mkdir(exist_ok=True)
        bad.write_bytes(b"not a signed config")
        try:
            refused = chot("vi", *publish)
            data = json.loads(chot("vi", *publish, "--json").stdout)
        finally:
            bad.unlink()
    store.close()
    assert refused.returncode == 1
    assert "HN-01/config.hn01-lane1: trung tâm từ chối: HTTP 4" in refused.stdout
    assert data["ok"] is False
    assert set(data["documents"][0]) == {"scope", "name", "version", "changed", "error"}


def test_dcc_lines(tmp_path: Path) -> None:
    home = tmp_path / "ops"
    assert chot("en", "provision", "init", home).returncode == 0
    cert = tmp_path / "dsc.der"
    cert.write_bytes(dcc_pki.make_signer(dcc_pki.DccCa()).der)
    added = chot("vi", "provision", "dcc", "add", "--home", home, cert)
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    assert lines[0] == "Đã ký danh sách tin cậy DCC phiên bản 1: 1 chứng chỉ, 1 chứng chỉ mới"
    assert lines[-1] == "Bước tiếp theo: công bố thay đổi: chot provision publish"
    listed = chot("vi", "provision", "dcc", "list", "--home", home).stdout
    assert "Tiêm chủng" in listed and "Kết quả xét nghiệm" in listed and "hiệu lực từ 20" in listed
    english = chot("en", "provision", "dcc", "list", "--home", home).stdout
    assert "Vaccination" in english and " valid 20" in english
    signed = chot("en", "provision", "dcc", "sign", "--home", home).stdout
    assert signed.startswith("DCC trust list version 2 signed: 1 certificates, 0 new\n")
    data = json.loads(chot("vi", "provision", "dcc", "list", "--home", home, "--json").stdout)
    assert set(data[0]) == {"kid", "country", "kinds", "not_before", "not_after"}


def test_cluster_lines(tmp_path: Path) -> None:
    """status and down on a planned cluster whose processes are not running; up's lines."""
    workdir = tmp_path / "cluster"
    workdir.mkdir()
    Layout.plan(workdir, 2).save()
    status = chot("vi", "central", "cluster", "status", "--workdir", workdir)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"node{n}: không chạy; etcd đã dừng, Patroni đã dừng, PostgreSQL đã dừng" for n in (1, 2)
    ]
    english = chot("en", "central", "cluster", "status", "--workdir", workdir).stdout
    assert english.startswith("node1: down; etcd not running, Patroni not running, PostgreSQL")
    rows = json.loads(
        chot("vi", "central", "cluster", "status", "--workdir", workdir, "--json").stdout
    )
    assert rows[0]["role"] == "down" and rows[0]["etcd"] is False
    down = chot("vi", "central", "cluster", "down", "--workdir", workdir)
    assert down.returncode == 0 and down.stdout.strip() == "Đã dừng cụm HA"
    gone = chot("vi", "central", "cluster", "status", "--workdir", workdir)
    assert gone.returncode == 2 and "không có cụm nào trong" in gone.stderr
    info = {"nodes": 3, "up_s": 12.5, "dsn": "postgresql://w", "read_dsn": "postgresql://r"}
    assert up_lines(info, translator("vi")) == [
        "Cụm HA 3 máy đã chạy sau 12.5 giây",
        "DSN ghi (máy chính): postgresql://w",
        "DSN đọc (ưu tiên máy dự phòng): postgresql://r",
    ]
    assert up_lines(info, translator("en"))[0] == "HA cluster of 3 nodes up in 12.5 s"
