"""Frame sources: where the scan loop gets its images (or already-read text) from.

Every source has ``read() -> Frame | None`` (None: the source has ended, e.g. files ran out
or stdin closed), ``close()`` and ``with`` support. A source that cannot be opened raises
``CameraError``, which the app shows as the ``no_camera`` device state (and retries).
``open_from_config`` turns the ``[camera]`` config section into an open source. The frame
types are in device/frame.py, the Pi camera in device/picamera.py.

A ``Frame`` normally carries ``gray`` (2-D uint8, what the decoders want). A USB
keyboard-wedge QR reader decodes by itself and types the text, so its frames carry ``text``
with ``gray=None``; ``device.decode.decode_frame`` handles both kinds.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from device.frame import CameraError, Frame, FrameCounter, FrameSource
from device.picamera import PiCameraSettings, PiCameraSource

if TYPE_CHECKING:
    from device.config import CameraSection

__all__ = ["CameraError", "Frame", "FrameCounter", "FrameSource", "open_from_config"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".pbm", ".tif", ".tiff"})


class OpenCVSource(FrameSource):
    """A V4L2/USB webcam (device index) or a video file (path) through OpenCV."""

    def __init__(self, device: int | str = 0, width: int = 640, height: int = 480) -> None:
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise CameraError(f"OpenCV cannot open video source {device!r}")
        if isinstance(device, int):
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._counter = FrameCounter()

    def read(self) -> Frame | None:
        ok, image = self._cap.read()
        if not ok:
            return None
        if image.ndim == 3:
            image = self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
        return self._counter.frame(image)

    def close(self) -> None:
        self._cap.release()


class ImageFileSource(FrameSource):
    """Image files in the given order; a directory stands for its images sorted by name.

    ``loop`` replays them forever, paced ``interval`` seconds apart, like a camera: frames
    recorded at a venue replayed on the bench. Greyscale PGM (what a recorded Y plane is
    saved as) is read with numpy alone; other formats load OpenCV on first use.
    """

    def __init__(
        self, paths: Iterable[str | Path], *, loop: bool = False, interval: float = 0.0
    ) -> None:
        self._paths: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                self._paths += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            elif p.is_file():
                self._paths.append(p)
            else:
                raise CameraError(f"no such image file or directory: {p}")
        if loop and not self._paths:
            raise CameraError("no image files to loop over")
        self._loop, self._interval = loop, interval
        self._iter = iter(self._paths)
        self._counter = FrameCounter()

    def read(self) -> Frame | None:
        path = next(self._iter, None)
        if path is None and self._loop:
            self._iter = iter(self._paths)
            path = next(self._iter, None)
        if path is None:
            return None
        if self._interval:
            time.sleep(self._interval)
        gray = _read_pgm(path) if path.suffix.lower() == ".pgm" else None
        if gray is None:
            from device.image_file import UnreadableImage, read_gray

            try:  # header dimensions bounded before decoding (see device/image_file.py)
                gray = read_gray(path)
            except UnreadableImage as exc:
                raise CameraError(f"cannot read image {path}: {exc}") from None
        return self._counter.frame(gray)

    def close(self) -> None:
        self._iter = iter(())
        self._loop = False


def _read_pgm(path: Path) -> np.ndarray | None:
    """Binary 8-bit PGM (P5) -> 2-D uint8 array; None for any other variant (OpenCV then)."""
    data = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments allowed between
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        if end == pos:
            return None
        fields.append(data[pos:end])
        pos = end
    pos += 1  # the single whitespace before the pixels
    if fields[0] != b"P5" or not all(f.isdigit() for f in fields[1:]) or fields[3] != b"255":
        return None
    width, height = int(fields[1]), int(fields[2])
    if len(data) - pos < width * height:
        return None
    return np.frombuffer(data, np.uint8, width * height, pos).reshape(height, width)


def write_pgm(path: Path, gray: np.ndarray) -> None:
    """Save a greyscale frame (a picamera2 lores Y plane, say) for replay with ``loop``."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    path.write_bytes(b"P5\n%d %d\n255\n" % (gray.shape[1], gray.shape[0]) + gray.tobytes())


class SyntheticSource(FrameSource):
    """Rendered frames (device.synthetic) of the given QR texts; ``None`` items give empty
    scenes. ``interval`` paces frames like a camera for the demo (0 = as fast as asked)."""

    def __init__(
        self,
        texts: Iterable[str | None],
        *,
        size: tuple[int, int] = (640, 480),
        difficulty: str = "normal",
        seed: int = 0,
        interval: float = 0.0,
    ) -> None:
        from device import synthetic

        self._render = synthetic.render_frame
        self._texts: Iterator[str | None] = iter(texts)
        self._size, self._difficulty, self._interval = size, difficulty, interval
        self._rng = np.random.default_rng(seed)
        self._counter = FrameCounter()
        if difficulty not in synthetic.RANGES:
            raise ValueError(
                f"unknown difficulty {difficulty!r}; expected {list(synthetic.RANGES)}"
            )

    def read(self) -> Frame | None:
        try:
            text = next(self._texts)
        except StopIteration:
            return None
        if self._interval:
            time.sleep(self._interval)
        gray = self._render(text, size=self._size, rng=self._rng, difficulty=self._difficulty)
        return self._counter.frame(gray)

    def close(self) -> None:
        self._texts = iter(())


class KeyboardWedgeSource(FrameSource):
    """A USB QR reader in keyboard mode: it types the decoded text and presses Enter.

    ``read`` blocks until a line arrives; blank lines are skipped, end of stream ends the
    source. The reader's keyboard layout must match the host's, or characters of the
    base45 alphabet such as ``:`` ``%`` ``*`` ``/`` arrive wrong (the verifier rejects them).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._counter = FrameCounter()

    def read(self) -> Frame | None:
        for line in self._stream:
            text = line.rstrip("\r\n")
            if text.strip():
                return self._counter.frame(text=text)
        return None

    def close(self) -> None:
        """The stream belongs to the caller (usually stdin); nothing to release."""


def _picamera(**settings: Any) -> FrameSource:
    """The Pi camera source lives in device/picamera.py (its picamera2 configuration)."""
    return PiCameraSource(PiCameraSettings(**settings))


SOURCES: dict[str, Callable[..., FrameSource]] = {
    "picamera": _picamera,
    "opencv": OpenCVSource,
    "files": ImageFileSource,
    "synthetic": SyntheticSource,
    "keyboard": KeyboardWedgeSource,
}


def open_source(kind: str, **options: Any) -> FrameSource:
    """Open a source by its config name with that source's keyword options."""
    try:
        cls = SOURCES[kind]
    except KeyError:
        raise ValueError(
            f"unknown frame source {kind!r}; expected one of: {', '.join(SOURCES)}"
        ) from None
    return cls(**options)


class ThreadedSource(FrameSource):
    """Runs a blocking source (a keyboard wedge waits for Enter) in its own thread so the loop
    keeps ticking (watchdog, device state); ``read`` returns an empty frame when idle."""

    def __init__(self, inner: FrameSource, idle_s: float = 0.5) -> None:
        self._inner = inner
        self._idle_s = idle_s
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="source", daemon=True)
        self._thread.start()
        self._ticks = 0

    def _run(self) -> None:
        while True:
            frame = self._inner.read()
            self._queue.put(frame)
            if frame is None:
                return

    def read(self) -> Frame | None:
        try:
            return self._queue.get(timeout=self._idle_s)
        except queue.Empty:
            self._ticks += 1
            return Frame(gray=None, t=time.monotonic(), index=-self._ticks)

    def close(self) -> None:
        self._inner.close()


def open_from_config(cam: CameraSection) -> FrameSource:
    """The source a ``[camera]`` section names, opened. Raises ``CameraError`` (or
    ``ValueError`` for a bad option) like ``open_source``."""
    kind = "picamera" if cam.source == "picamera2" else cam.source
    if kind == "picamera":
        return open_source(
            kind,
            width=cam.width,
            height=cam.height,
            fps=cam.fps,
            buffer_count=cam.buffer_count,
            lens_position=cam.lens_position,
            af_range=cam.af_range,
            exposure_value=cam.exposure_value,
            metering=cam.metering,
            exposure_mode=cam.exposure_mode,
        )
    if kind == "opencv":
        return open_source(kind, device=cam.device, width=cam.width, height=cam.height)
    if kind == "files":
        interval = 1.0 / cam.fps if cam.loop else 0.0  # a replay is paced like a camera
        return open_source(kind, paths=cam.paths, loop=cam.loop, interval=interval)
    if kind == "keyboard":
        return ThreadedSource(open_source(kind))
    return _open_synthetic_queue(cam)


def _open_synthetic_queue(cam: CameraSection) -> FrameSource:
    """Rendered frames of a checkpoint queue presenting the passes of ``passes_file``."""
    from device.synthetic import arrival_texts  # OpenCV is loaded only for synthetic frames

    passes: list[str] = []
    if cam.passes_file is not None:
        try:
            passes = [ln.strip() for ln in cam.passes_file.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise CameraError(f"cannot read passes_file: {exc.strerror}") from None
    texts = arrival_texts(
        passes,
        arrival_per_min=cam.arrival_per_min,
        hold_s=cam.hold_s,
        fps=cam.fps,
        seed=cam.seed,
    )
    return open_source(
        "synthetic",
        texts=texts,
        size=(cam.width, cam.height),
        difficulty=cam.difficulty,
        seed=cam.seed,
        interval=1.0 / cam.fps,
    )
