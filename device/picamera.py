"""The Raspberry Pi camera as a frame source, configured for reading QR codes.

picamera2's defaults suit a preview window, not a scanner: a 1280x720 (video) or 1280x960
(preview) XBGR main stream and a raw stream nobody reads, no frame-rate cap, manual focus
on Camera Module 3 and metering that lets a bright phone screen burn out. Here only the
``lores`` YUV420 stream is read, and the libcamera controls come from ``[camera]``
(device/config.py gives their limits; device/README.md explains the defaults).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.frame import CameraError, Frame, FrameCounter, FrameSource

log = logging.getLogger(__name__)

# libcamera enum values (libcamera/control_ids.yaml), passed as ints so no libcamera import
AF_MODE_MANUAL, AF_MODE_CONTINUOUS = 0, 2
AF_RANGES = {"normal": 0, "macro": 1, "full": 2}
METERING_MODES = {"centre": 0, "spot": 1, "matrix": 2}
EXPOSURE_MODES = {"normal": 0, "short": 1}


@dataclass(frozen=True)
class PiCameraSettings:
    """What the scan loop asks of a Pi camera (``[camera]`` in the config, with limits)."""

    width: int = 640
    height: int = 480
    fps: float = 15.0
    buffer_count: int = 3
    lens_position: float | None = None
    af_range: str = "normal"
    exposure_value: float = -0.5
    metering: str = "centre"
    exposure_mode: str = "short"


def picamera_controls(settings: PiCameraSettings, available: dict[str, Any]) -> dict[str, Any]:
    """libcamera controls for reading QR codes, limited to what this camera offers
    (``Picamera2.camera_controls``: name -> (min, max, default)). Autofocus controls only
    exist on cameras with a focus motor (Camera Module 3); others get none."""
    controls: dict[str, Any] = {}
    if "FrameDurationLimits" in available:
        frame_us = round(1e6 / settings.fps)
        low, high = available["FrameDurationLimits"][:2]
        if low and high and high >= low:
            frame_us = max(int(low), min(int(high), frame_us))
        controls["FrameDurationLimits"] = (frame_us, frame_us)
    if "AfMode" in available:
        if settings.lens_position is None:
            controls["AfMode"] = AF_MODE_CONTINUOUS
            if "AfRange" in available:
                controls["AfRange"] = AF_RANGES[settings.af_range]
        elif "LensPosition" in available:
            low, high = available["LensPosition"][:2]
            controls["AfMode"] = AF_MODE_MANUAL
            controls["LensPosition"] = max(float(low), min(float(high), settings.lens_position))
    if "ExposureValue" in available:
        controls["ExposureValue"] = settings.exposure_value
    if "AeMeteringMode" in available:
        controls["AeMeteringMode"] = METERING_MODES[settings.metering]
    if "AeExposureMode" in available:
        controls["AeExposureMode"] = EXPOSURE_MODES[settings.exposure_mode]
    return controls


class PiCameraSource(FrameSource):
    """Raspberry Pi camera via picamera2 (libcamera), configured for the job.

    The decoders want grayscale, so the only stream read is ``lores`` in YUV420, whose Y
    plane is that image (no colour conversion on the Pi). picamera2 requires a ``main``
    stream; it is made the same small YUV420 size (it is never read) instead of the 1280x720
    XBGR8888 default, and there is no raw stream: about 2.8 MB of buffers in all instead of
    about 20 MB. ``buffer_count`` (3) keeps one buffer being filled, one being copied out and
    one spare; a capture copies the frame out at once, so more buffers only add latency.
    Controls (``picamera_controls``) cap the frame rate at ``fps``, run continuous autofocus
    where the camera has it (or hold ``lens_position``) and meter for bright phone screens.
    YUV420 rows may be padded to an aligned stride, hence the slice to ``width``.
    """

    def __init__(self, settings: PiCameraSettings | None = None) -> None:
        self.settings = settings = settings or PiCameraSettings()
        try:
            from picamera2 import Picamera2  # Pi only: apt install python3-picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not installed (apt install python3-picamera2)") from exc
        size = (settings.width, settings.height)
        self._cam = None
        try:
            self._cam = Picamera2()
            self.controls = picamera_controls(settings, dict(self._cam.camera_controls))
            config = self._cam.create_video_configuration(
                main={"size": size, "format": "YUV420"},
                lores={"size": size, "format": "YUV420"},
                raw=None,
                buffer_count=settings.buffer_count,
                controls=self.controls,
                display=None,
                encode=None,
                queue=False,  # a capture waits for the next frame, never hands an old one
            )
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:  # IndexError/RuntimeError when no camera is attached
            self._release()
            raise CameraError(f"cannot open the Pi camera: {exc}") from exc
        self._counter = FrameCounter()

    def read(self) -> Frame | None:
        width, height = self.settings.width, self.settings.height
        try:
            yuv = self._cam.capture_array("lores")
        except Exception as exc:
            raise CameraError(f"Pi camera capture failed: {exc}") from exc
        return self._counter.frame(np.ascontiguousarray(yuv[:height, :width]))

    def _release(self) -> None:
        if self._cam is None:
            return
        for step in (self._cam.stop, self._cam.close):
            try:
                step()
            except Exception as exc:  # a half-opened camera: release what can be released
                log.debug("Pi camera %s failed: %s", step.__name__, exc)
        self._cam = None

    def close(self) -> None:
        self._release()
