"""QR decoder backends behind one small interface.

Both backends look for QR codes only: a checkpoint has no use for other symbologies, and
restricting the search saves time on every frame, most of which show no code at all.

Text out: a chot pass is alphanumeric text, which both libraries return as ``str``. Should a
code carry binary (byte-mode data that is not valid text), it is returned as its raw bytes
decoded as latin-1, which maps bytes 0-255 one to one onto code points 0-255; callers that
need the bytes back use ``text.encode("latin-1")``. The verifier rejects such text anyway
(it does not start with ``CHOT1:``), but it must not crash the scan loop.

``DEFAULT_DECODER`` is set from the measurement in device/DECODERS.md (bench/bench_decoders.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from device.camera import Frame

DEFAULT_DECODER = "zxing"


class DecoderUnavailable(RuntimeError):
    """The decoder's library (or its native part) is not installed."""


class Decoder(Protocol):
    name: str

    def decode(self, gray: np.ndarray) -> list[str]:
        """Texts of all QR codes found in a 2-D uint8 image; ``[]`` when there are none."""
        ...


class ZxingDecoder:
    """zxing-cpp: the fastest and most robust in our measurement, and fast on empty frames.

    ``try_rotate`` finds codes turned 90/270 degrees (cards are held any way round);
    ``try_downscale`` lets it find large, close-up codes; ``try_invert`` is off because chot
    passes are always dark on light and it would double the work on every empty frame.
    """

    name = "zxing"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise DecoderUnavailable("zxing-cpp is not installed: pip install zxing-cpp") from exc
        self._zx = zxingcpp
        # 3.x groups Micro QR and rMQR under QRCode; a pass is always a model-2 QR code.
        self._formats = getattr(zxingcpp.BarcodeFormat, "QRCodeModel2", None) or (
            zxingcpp.BarcodeFormat.QRCode
        )

    def decode(self, gray: np.ndarray) -> list[str]:
        found = self._zx.read_barcodes(
            np.ascontiguousarray(gray),
            formats=self._formats,
            try_rotate=True,
            try_downscale=True,
            try_invert=False,
        )
        return [
            b.text if b.content_type == self._zx.ContentType.Text else b.bytes.decode("latin-1")
            for b in found
            if b.valid
        ]


class ZbarDecoder:
    """pyzbar over the ZBar C library (Debian package ``libzbar0``)."""

    name = "zbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # also raised when libzbar.so is missing
            raise DecoderUnavailable(
                f"pyzbar cannot load ZBar ({exc}): pip install pyzbar and apt install libzbar0"
            ) from exc
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, gray: np.ndarray) -> list[str]:
        found = self._pyzbar.decode(np.ascontiguousarray(gray), symbols=self._symbols)
        return [_text(d.data) for d in found]


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


DECODERS: dict[str, type[ZxingDecoder] | type[ZbarDecoder]] = {
    "zxing": ZxingDecoder,
    "zbar": ZbarDecoder,
}


def make_decoder(name: str = DEFAULT_DECODER) -> Decoder:
    try:
        cls = DECODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown decoder {name!r}; expected one of {', '.join(DECODERS)}"
        ) from None
    return cls()


def decode_frame(decoder: Decoder, frame: Frame) -> list[str]:
    """Texts in a frame: a keyboard-wedge frame already carries its text, a camera frame
    goes through the decoder. The one place the scan loop needs to know the difference."""
    if frame.text is not None:
        return [frame.text]
    if frame.gray is None:
        return []
    return decoder.decode(frame.gray)
