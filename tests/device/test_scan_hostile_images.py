"""`chot scan` on hostile images (issue #13, item 10): a 74-byte PNG that claims 65535 x 65535
pixels and a ~1 MB PNG bomb of zeros are reported `unreadable` in their own JSON line, the next
file is still decoded, and the process never holds the pixels the headers promise."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import synthetic
from device.image_file import MAX_PIXELS, UnreadableImage, check_header, read_gray, read_header
from tests.support.device_pipeline import Pki

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT_KB = 300 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit greyscale PNG with the given (possibly lying) header and compressed data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """side x side black pixels, deflated as a stream (the test never holds them either)."""
    squeeze = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + pixels
    parts = [squeeze.compress(row) for _ in range(side)]
    return png(side, side, b"".join(parts) + squeeze.flush())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    tiny_liar = png(65535, 65535, zlib.compress(bytes(17)))
    assert len(tiny_liar) < 80  # the 74-byte PNG
    bomb = png_bomb(30_000)  # 900 megapixels behind about a megabyte
    assert len(bomb) < 1_500_000
    paths = {"huge_header": folder / "huge.png", "bomb": folder / "bomb.png"}
    paths["huge_header"].write_bytes(tiny_liar)
    paths["bomb"].write_bytes(bomb)
    paths["good"] = folder / "card.png"
    frame = synthetic.render_frame(Pki().make_pass(), rng=np.random.default_rng(3))
    cv2.imwrite(str(paths["good"]), frame)
    return paths


def test_chot_scan_reports_hostile_files_and_goes_on_in_bounded_memory(files) -> None:
    order = [files["bomb"], files["good"], files["huge_header"]]
    # a fresh parent, so RUSAGE_CHILDREN sees the scan process alone
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(done.stdout, end='')\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print('EXIT', done.returncode)\n"
    )
    command = [sys.executable, "-m", "chot", "scan", "--json", *map(str, order)]
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    maxrss_kb = int(next(line for line in lines if line.startswith("MAXRSS")).split()[1])
    exit_code = int(next(line for line in lines if line.startswith("EXIT")).split()[1])
    assert "Traceback" not in done.stderr, done.stderr
    assert [r["file"] for r in records] == [str(p) for p in order]
    bomb, good, huge = records
    assert good["decoded"] is True and good["reason"] == "no_trust_list"
    for bad in (bomb, huge):
        assert (bad["decoded"], bad["verdict"], bad["reason"]) == (False, "none", "unreadable")
        assert "megapixel limit" in bad["detail"]
    assert "30000x30000" in bomb["detail"] and "65535x65535" in huge["detail"]
    assert exit_code == 2  # some files were unreadable
    assert maxrss_kb < MEMORY_LIMIT_KB, f"scan peaked at {maxrss_kb // 1024} MB"


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (png(640, 480, b""), ("png", 640, 480)),
        (_jpeg(65500, 65500), ("jpeg", 65500, 65500)),
        (b"BM" + bytes(16) + struct.pack("<ii", 50000, -50000) + bytes(8), ("bmp", 50000, 50000)),
        (b"P5\n# a comment\n70000 70000\n255\n", ("pnm", 70000, 70000)),
    ],
)
def test_header_dimensions_of_every_format_we_decode(head: bytes, expected: tuple) -> None:
    header = read_header(head)
    assert (header.format, header.width, header.height) == expected
    if header.width * header.height > MAX_PIXELS:
        with pytest.raises(UnreadableImage, match="megapixel limit"):
            check_header(header)


def test_other_formats_and_broken_files_are_refused_without_decoding(tmp_path: Path) -> None:
    cases = {
        "tiff.tif": b"II*\x00" + bytes(100),
        "empty.png": b"",
        "short.png": b"\x89PNG\r\n\x1a\n\x00\x00",
        "zero.png": png(0, 10, b""),
        "jpeg-no-frame.jpg": b"\xff\xd8\xff\xe0\x00\x10" + bytes(14),
        "garbage-pixels.png": png(10, 10, b"not deflate"),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableImage):
            read_gray(tmp_path / name)
    with pytest.raises(UnreadableImage, match="cannot open"):
        read_gray(tmp_path / "missing.png")
