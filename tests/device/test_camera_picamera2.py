"""The Pi camera's picamera2 configuration, against a recording fake picamera2 module.

tests/device/fake_picamera2/picamera2 mirrors the real API's names and shapes (and refuses
what the real one refuses, e.g. a control the camera does not advertise), so these tests
check what a unit asks of libcamera: only the lores Y stream, no raw stream, a small main,
a justified buffer_count, the frame-rate cap, autofocus where there is a focus motor, and
exposure for phone screens (issue #14).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from device.camera import CameraError, open_from_config
from device.config import CameraSection

FAKE = Path(__file__).parent / "fake_picamera2"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    assert Path(picamera2.__file__).is_relative_to(FAKE)
    picamera2.attach(picamera2.IMX708)
    yield picamera2
    sys.modules.pop("picamera2", None)


def calls(fake, name):
    return [args for call, args in fake.calls if call == name]


def camera(**values) -> CameraSection:
    return CameraSection.model_validate({"source": "picamera2"} | values)


def test_camera_module_3_defaults(fake):
    with open_from_config(camera()) as source:
        frame = source.read()
    (asked,) = calls(fake, "create_video_configuration")
    assert asked["main"] == {"size": (640, 480), "format": "YUV420"}  # small, never read
    assert asked["lores"] == {"size": (640, 480), "format": "YUV420"}
    assert asked["raw"] is None  # no raw stream
    assert asked["buffer_count"] == 3
    assert asked["display"] is None and asked["encode"] is None and asked["queue"] is False
    (config,) = calls(fake, "configure")
    assert config["controls"] == {
        "NoiseReductionMode": 1,  # picamera2's video default, kept
        "FrameDurationLimits": (66667, 66667),  # fps 15
        "AfMode": 2,  # continuous
        "AfRange": 0,  # normal
        "ExposureValue": -0.5,
        "AeMeteringMode": 0,  # centre-weighted
        "AeExposureMode": 1,  # short
    }
    streams = [config[name] for name in ("main", "lores", "raw") if config[name] is not None]
    buffers = sum(s["stride"] * s["size"][1] * 3 // 2 for s in streams) * config["buffer_count"]
    assert buffers < 3 * 1024 * 1024  # preview defaults: about 20 MB
    assert ("capture", "lores") in fake.calls and ("capture", "main") not in fake.calls
    assert frame.gray.shape == (480, 640) and frame.gray.dtype == np.uint8
    assert frame.gray.flags.c_contiguous
    assert [c for c, _ in fake.calls][-2:] == ["stop", "close"]


def test_fixed_focus_camera_gets_no_autofocus_controls(fake):
    fake.attach(fake.IMX219)  # Camera Module 2: configure would refuse AfMode
    with open_from_config(camera(lens_position=4.0)) as source:
        assert source.read().gray.shape == (480, 640)
    (config,) = calls(fake, "configure")
    assert not {"AfMode", "AfRange", "LensPosition"} & set(config["controls"])
    assert config["controls"]["ExposureValue"] == -0.5


def test_fixed_lens_position_and_limits_from_the_camera(fake):
    with open_from_config(camera(lens_position=20.0, fps=120, af_range="macro")):
        pass
    (config,) = calls(fake, "configure")
    controls = config["controls"]
    assert controls["AfMode"] == 0 and controls["LensPosition"] == 15.0  # imx708's maximum
    assert "AfRange" not in controls  # no search in manual focus
    assert controls["FrameDurationLimits"] == (8333, 8333)  # 120 fps is the sensor's limit


def test_config_choices_reach_libcamera(fake):
    config = camera(
        fps=10, exposure_value=-1.5, metering="spot", exposure_mode="normal", af_range="macro"
    )
    with open_from_config(config):
        pass
    (configured,) = calls(fake, "configure")
    controls = configured["controls"]
    assert controls["FrameDurationLimits"] == (100000, 100000)
    assert controls["ExposureValue"] == -1.5
    assert controls["AeMeteringMode"] == 1 and controls["AeExposureMode"] == 0
    assert controls["AfMode"] == 2 and controls["AfRange"] == 1


def test_padded_rows_are_cut_to_the_width(fake):
    scene = np.random.default_rng(1).integers(0, 256, (240, 600), np.uint8)
    fake.scene = scene
    with open_from_config(camera(width=600, height=240, buffer_count=4)) as source:
        frame = source.read()
    (config,) = calls(fake, "configure")
    assert config["lores"]["stride"] == 640 and config["buffer_count"] == 4
    assert np.array_equal(frame.gray, scene)


def test_no_camera_attached_is_a_camera_error(fake):
    fake.attach()
    with pytest.raises(CameraError, match="cannot open the Pi camera"):
        open_from_config(camera())


def test_a_failed_capture_is_a_camera_error(fake):
    with open_from_config(camera()) as source:
        fake.fail_capture = True
        with pytest.raises(CameraError, match="capture failed"):
            source.read()


@pytest.mark.parametrize(
    "values",
    [
        {"fps": 0.5},
        {"fps": 121},
        {"buffer_count": 1},
        {"buffer_count": 9},
        {"lens_position": -1},
        {"exposure_value": 5},
        {"metering": "average"},
        {"reopen_min_s": 10, "reopen_max_s": 5},
    ],
)
def test_camera_limits(values):
    with pytest.raises(ValueError):
        camera(**values)
