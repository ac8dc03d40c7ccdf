"""`chot demo --duration N --workdir DIR`: the README's first command, unattended, end to end.

Real processes (Mosquitto with the provisioned TLS/ACL config, central store, gateway with its
status page) and 4 scanner units; the closing JSON line is computed from the central store, and
`chot central stats --json` reads the same store.
"""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.timeout(240)
def test_demo_runs_unattended_and_loses_nothing(tmp_path):
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "chot", "demo", "--duration", "25", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "CHOT_LANG": "vi"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["scans_decided"] > 10
    assert summary["lost"] == 0 and summary["duplicates"] == 0 and summary["drained"] is True
    assert summary["events_central"] >= summary["scans_decided"]
    assert summary["by_verdict"].get("pass", 0) > 0 and summary["by_verdict"].get("fail", 0) > 0
    # each unit's line says its last decision in words, as a unit with a screen would
    assert "Không hợp lệ: " in done.stdout and " — " in done.stdout
    assert "status page : https://127.0.0.1:" in done.stdout and "login: operator / " in done.stdout
    assert (workdir / "central.db").exists()  # the work dir is kept, central store included

    stats = subprocess.run(
        [
            sys.executable,
            "-m",
            "chot",
            "central",
            "stats",
            "--json",
            "--store",
            f"sqlite:///{workdir / 'central.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stats.returncode == 0, stats.stderr
    central = json.loads(stats.stdout)
    assert central["events_central"] == summary["events_central"]
    assert central["duplicates"] == 0
    # nothing personal reached the centre: the demo passes carry no name, but the pseudonyms do
    assert all(d["missing"] == 0 for d in central["by_device"].values())
