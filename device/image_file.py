"""Still images from files, read safely: the header's dimensions are checked before any pixel
is decoded.

A 74-byte PNG may claim 65535 x 65535 pixels and a 1 MB PNG of zeros inflates to gigabytes:
OpenCV allocates whatever the header says (IMREAD_REDUCED_* and imdecode do not bound it) and
may raise on the way. So we read the width and height ourselves from the PNG, JPEG, PNM
(PBM/PGM/PPM) or BMP header, refuse anything over MAX_PIXELS or MAX_FILE_BYTES and any other
format, and only then let OpenCV decode, with its errors caught. Every refusal is an
`UnreadableImage` with a short reason, so a caller reports the file and goes on.
"""

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_PIXELS = 40_000_000  # 40 megapixels: any camera photo of a QR; 8-bit RGB decodes to 120 MB
MAX_FILE_BYTES = 64 * 1024 * 1024
_HEADER_BYTES = 64 * 1024  # JPEG markers before the frame header (EXIF thumbnails) fit here


class UnreadableImage(Exception):
    """The file is not an image we will decode; `str(exc)` says why (no pixel data)."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def read_header(head: bytes) -> ImageHeader:
    """Format and dimensions from the first bytes of a file; UnreadableImage otherwise."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise UnreadableImage("truncated PNG header")
        width, height = struct.unpack(">II", head[16:24])
        return ImageHeader("png", width, height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_header(head)
    if head.startswith(b"BM"):
        if len(head) < 26:
            raise UnreadableImage("truncated BMP header")
        width, height = struct.unpack("<ii", head[18:26])
        return ImageHeader("bmp", abs(width), abs(height))
    match = re.match(rb"P([1-6])(?:\s+|#[^\n]*\n)+(\d{1,9})(?:\s+|#[^\n]*\n)+(\d{1,9})\s", head)
    if match:
        return ImageHeader("pnm", int(match[2]), int(match[3]))
    raise UnreadableImage("not a PNG, JPEG, PNM or BMP image")


def _jpeg_header(head: bytes) -> ImageHeader:
    """Walk the JPEG markers to the first frame header (SOFn) and read its dimensions."""
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            raise UnreadableImage("corrupt JPEG marker")
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(head):
                break
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return ImageHeader("jpeg", width, height)
        if length < 2:
            raise UnreadableImage("corrupt JPEG segment")
        pos += 2 + length
    raise UnreadableImage("no JPEG frame header in the first 64 KiB")


def check_header(header: ImageHeader, max_pixels: int = MAX_PIXELS) -> None:
    if header.width <= 0 or header.height <= 0:
        raise UnreadableImage(f"{header.format} header says {header.width}x{header.height}")
    if header.width * header.height > max_pixels:
        raise UnreadableImage(
            f"{header.format} of {header.width}x{header.height} pixels is over the "
            f"{max_pixels // 1_000_000} megapixel limit"
        )


def read_gray(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The image at `path` as a 2-D uint8 array, or UnreadableImage with the reason."""
    import cv2

    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            if size > MAX_FILE_BYTES:
                raise UnreadableImage(f"file over {MAX_FILE_BYTES // (1024 * 1024)} MB")
            file.seek(0)
            head = file.read(_HEADER_BYTES)
            check_header(read_header(head), max_pixels)
            data = head + file.read()
    except OSError as exc:
        raise UnreadableImage(f"cannot open: {exc.strerror or type(exc).__name__}") from None
    try:
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:
        raise UnreadableImage(f"decoder error: {str(exc).strip().splitlines()[-1]}") from None
    if gray is None:
        raise UnreadableImage("the decoder could not read it")
    return gray
