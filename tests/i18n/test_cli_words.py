"""What people read on a terminal follows CHOT_LANG (Vietnamese by default): the demo's lights
and unit states. Run in a fresh interpreter, as a person would start it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIGHTS = """
from common.i18n import cli_translator
from device.gpio.base import BUZZER
from device.gpio.simulated import SimulatedBackend
from chot.demo import STATE_WORDS
backend = SimulatedBackend()
backend.setup({"green": 17, "red": 27, "amber": 22, BUZZER: 18})
backend.write("green", True)
tr = cli_translator()
print(backend.render(tr))
backend.tone(BUZZER, 2000)
backend.write("green", False)
backend.write("red", True)
print(backend.render(tr))
print(tr.gettext(STATE_WORDS["idle"]), "|", tr.gettext(STATE_WORDS["no_camera"]))
"""


def run(lang: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LANG")}
    env.pop("CHOT_LANG", None)
    if lang:
        env["CHOT_LANG"] = lang
    out = subprocess.run(
        [sys.executable, "-c", LIGHTS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("lang", ["vi", None])
def test_demo_lights_in_vietnamese(lang: str | None) -> None:
    assert run(lang) == [
        "[● xanh][○ đỏ][○ vàng][ im lặng ]",
        "[○ xanh][● đỏ][○ vàng][♪ 2000 Hz]",
        "sẵn sàng | không có camera",
    ]


def test_demo_lights_in_english() -> None:
    assert run("en") == [
        "[● green][○ red][○ amber][  quiet  ]",
        "[○ green][● red][○ amber][♪ 2000 Hz]",
        "ready | no camera",
    ]
