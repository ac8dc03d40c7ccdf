"""A recording stand-in for picamera2 (the real one exists only on a Pi, from apt).

It mirrors the names and shapes of the real API (picamera2/picamera2.py): ``Picamera2()``
raises IndexError when no camera is attached; ``camera_controls`` maps each control libcamera
advertises to ``(min, max, default)`` and has ``AfMode`` only on cameras with a focus motor;
``create_video_configuration(main, lores, raw, transform, colour_space, buffer_count,
controls, display, encode, queue)`` returns the configuration dict, merging its own default
controls under the caller's; ``configure`` refuses what the real one refuses (a lores stream
that is not YUV or larger than main, a display/encode stream not defined, a control the camera
does not advertise) and adds each stream's ``stride``; ``capture_array(name)`` of a YUV420
stream is ``(height * 3 // 2, stride)`` uint8 with the rows padded to the stride.

Tests attach a camera with ``attach(IMX708)`` and read what was asked in ``calls``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IMX708 = {  # Camera Module 3: autofocus
    "model": "imx708",
    "controls": {
        "AfMode": (0, 2, 0),
        "AfRange": (0, 2, 0),
        "AfSpeed": (0, 1, 0),
        "AfTrigger": (0, 1, 0),
        "LensPosition": (0.0, 15.0, 1.0),
        "FrameDurationLimits": (8333, 120000000, 33333),
        "ExposureValue": (-8.0, 8.0, 0.0),
        "AeMeteringMode": (0, 3, 0),
        "AeExposureMode": (0, 3, 0),
        "ExposureTime": (26, 112015443, 20000),
        "AnalogueGain": (1.12, 16.0, 1.0),
        "NoiseReductionMode": (0, 4, 0),
    },
}
IMX219 = {  # Camera Module 2: fixed focus, no AfMode
    "model": "imx219",
    "controls": {k: v for k, v in IMX708["controls"].items() if not k.startswith(("Af", "Lens"))}
    | {"FrameDurationLimits": (11111, 120000000, 33333)},
}

attached: list[dict[str, Any]] = []
calls: list[tuple[str, Any]] = []
fail_capture = False
scene: np.ndarray | None = None  # the Y plane captures show (else a gradient)


def attach(*cameras: dict[str, Any]) -> None:
    """Reset the fake: these cameras are plugged in and nothing has been called."""
    global fail_capture, scene
    attached[:] = cameras
    calls.clear()
    fail_capture = False
    scene = None


def _stride(width: int) -> int:
    return (width + 63) // 64 * 64  # ISP rows aligned to 64 bytes


class Picamera2:
    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        calls.append(("Picamera2", camera_num))
        self._info = attached[camera_num]  # IndexError when absent, like the real one
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(self._info["controls"])

    @property
    def camera_properties(self) -> dict[str, Any]:
        return {"Model": self._info["model"], "PixelArraySize": (4608, 2592)}

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        calls.append(
            (
                "create_video_configuration",
                {
                    "main": main,
                    "lores": lores,
                    "raw": raw,
                    "buffer_count": buffer_count,
                    "controls": controls,
                    "display": display,
                    "encode": encode,
                    "queue": queue,
                },
            )
        )
        main = self._stream({"format": "XBGR8888", "size": (1280, 720)}, main or {})
        lores = None if lores is None else self._stream(dict(main, format="YUV420"), lores)
        raw = (
            None if raw is None else self._stream({"format": "SBGGR10", "size": (4608, 2592)}, raw)
        )
        defaults = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
        config = {
            "use_case": "video",
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": defaults | (controls or {}),
        }
        for name in (display, encode):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"Display stream {name} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    @staticmethod
    def _stream(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
        for key in updates:
            if key not in ("format", "size"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are")
        return base | updates

    def configure(self, config: dict[str, Any]) -> None:
        main, lores = config["main"], config["lores"]
        if lores is not None:
            if not lores["format"].startswith(("YUV", "YVU")):
                raise RuntimeError("lores stream must be YUV")
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        for name in config["controls"]:
            if name not in self._info["controls"]:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        for name in ("main", "lores", "raw"):
            if config[name] is not None:
                config[name]["stride"] = _stride(config[name]["size"][0])
        calls.append(("configure", config))
        self.camera_config = config

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        calls.append(("start", show_preview))
        self.started = True

    def set_controls(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if name not in self._info["controls"]:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        calls.append(("set_controls", dict(controls)))

    def capture_buffer(self, name: str = "main", wait: Any = None) -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera not started")
        if fail_capture:
            raise TimeoutError("Camera frontend has timed out!")
        stream = self.camera_config[name]
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        calls.append(("capture", name))
        width, height = stream["size"]
        stride = stream["stride"]
        buf = np.full((height * 3 // 2, stride), 0xEE, np.uint8)  # padding and chroma
        y = scene if scene is not None else np.tile(np.arange(width) % 256, (height, 1))
        buf[:height, :width] = y
        return buf.reshape(-1)

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        stream_format = self.camera_config[name]["format"]
        if stream_format != "YUV420":
            raise NotImplementedError("the fake only renders YUV420 streams")
        buf = self.capture_buffer(name, wait)
        height = self.camera_config[name]["size"][1]
        return buf.reshape(height * 3 // 2, self.camera_config[name]["stride"])

    def stop(self) -> None:
        calls.append(("stop", None))
        self.started = False

    def close(self) -> None:
        calls.append(("close", None))
        self.is_open = False
