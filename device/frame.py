"""What every frame source gives the scan loop: a ``Frame``, through the ``FrameSource``
protocol, or a ``CameraError`` (device/camera.py has the sources, device/picamera.py the Pi
camera)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class CameraError(RuntimeError):
    """The source could not be opened or stopped delivering (device state "no camera")."""


@dataclass(frozen=True)
class Frame:
    """One capture. ``t`` is ``time.monotonic()`` at capture, ``index`` counts from 0.
    Exactly one of ``gray`` (image) and ``text`` (keyboard wedge) is set."""

    gray: np.ndarray | None
    t: float
    index: int
    text: str | None = None


class FrameSource(Protocol):
    """Implementations subclass this to inherit the context-manager methods."""

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameCounter:
    """Frame numbering and timestamps shared by all sources."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0

    def frame(self, gray: np.ndarray | None = None, text: str | None = None) -> Frame:
        index, self._next = self._next, self._next + 1
        return Frame(gray=gray, t=self._clock(), index=index, text=text)
