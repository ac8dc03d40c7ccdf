"""`chot scan` on PNG files rendered with device.synthetic and segno."""

import argparse
import json

import cv2
import numpy as np
import pytest
import segno
from nacl.signing import SigningKey

from chot import scan_cmd as cli
from chot.cli import main
from common.cli import UsageError
from device import synthetic
from tests.support.device_pipeline import Pki


def run(argv: list[str], capsys) -> tuple[int, list[dict]]:
    parser = argparse.ArgumentParser(prog="chot")
    cli.add_commands(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    lines = capsys.readouterr().out.splitlines()
    return code, [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    pki = Pki()
    folder = tmp_path_factory.mktemp("scan")
    good, forged = pki.make_pass(), pki.make_pass(key=SigningKey.generate())
    rng = np.random.default_rng(7)
    cv2.imwrite(str(folder / "card.png"), synthetic.render_frame(good, rng=rng, difficulty="easy"))
    segno.make_qr(forged, error="m").save(str(folder / "forged.png"), scale=4, border=4)
    cv2.imwrite(str(folder / "empty.png"), synthetic.render_frame(None, rng=rng))
    (folder / "trust.cose").write_bytes(pki.trust_list())
    return pki, folder, good


@pytest.mark.parametrize("decoder", ["zxing", "zbar"])
def test_scan_verifies_against_a_signed_trust_list(images, capsys, decoder):
    pki, folder, _ = images
    files = [str(folder / n) for n in ("card.png", "forged.png", "empty.png")]
    code, out = run(
        [
            "scan",
            "--json",
            "--decoder",
            decoder,
            "--trust",
            str(folder / "trust.cose"),
            "--root-key",
            pki.root_hex,
            *files,
        ],
        capsys,
    )
    assert code == 0
    assert [(o["decoded"], o["verdict"], o["reason"]) for o in out] == [
        (True, "pass", "ok"),
        (True, "fail", "unknown_kid"),
        (False, "none", None),
    ]
    assert all("payload" not in o and o["ms"] >= 0 for o in out)
    assert [o["file"] for o in out] == files


def test_scan_without_trust_warns_and_payload_only_on_request(images, capsys):
    _, folder, good = images
    code, out = run(["scan", "--json", str(folder / "card.png")], capsys)
    assert code == 0 and (out[0]["verdict"], out[0]["reason"]) == ("warn", "no_trust_list")
    assert "payload" not in out[0]
    code, out = run(["scan", "--json", "--show-payload", str(folder / "card.png")], capsys)
    assert out[0]["payload"] == good


def test_scan_root_key_from_env_and_usage_errors(images, capsys, monkeypatch):
    pki, folder, _ = images
    trust = str(folder / "trust.cose")
    monkeypatch.delenv("CHOT_ROOT_PUBLIC_KEY", raising=False)
    with pytest.raises(UsageError, match="root public key"):  # nothing to verify the list with
        run(["scan", "--trust", trust, str(folder / "card.png")], capsys)
    monkeypatch.setenv("CHOT_ROOT_PUBLIC_KEY", pki.root_hex)
    code, out = run(
        ["scan", "--json", "--trust", trust, "--at", str(pki.now), str(folder / "card.png")], capsys
    )
    assert code == 0 and out[0]["verdict"] == "pass"
    code, out = run(
        [
            "scan",
            "--json",
            "--trust",
            trust,
            "--at",
            str(pki.now + 10 * 86400),
            str(folder / "card.png"),
        ],
        capsys,
    )
    assert out[0]["reason"] == "expired"
    code, out = run(["scan", "--json", str(folder / "missing.png")], capsys)
    assert code == 2 and out[0]["error"] == "cannot read image"


def test_through_the_chot_entry_point(images, capsys):
    pki, folder, _ = images
    code = main(
        [
            "scan",
            "--json",
            "--trust",
            str(folder / "trust.cose"),
            "--root-key",
            pki.root_hex,
            str(folder / "card.png"),
        ]
    )
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and (out["decoded"], out["verdict"]) == (True, "pass")
    assert (
        main(
            [
                "scan",
                "--trust",
                str(folder / "trust.cose"),
                "--root-key",
                "zz",
                str(folder / "card.png"),
            ]
        )
        == 2
    )
    assert main(["device", "run", "--config", str(folder / "missing.toml")]) == 2
