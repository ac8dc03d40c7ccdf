"""Camera-like grayscale frames of chot QR passes, for tests, the benchmark and the demo.

There is no camera and no public photo set of chot passes, so frames are rendered: a pass on
a printed card lying on a table, or on a phone screen with a dark bezel, placed in a cluttered
scene with scale, rotation, perspective, blur, sensor noise, uneven light, glare, low contrast
and partial framing. Everything is drawn from the caller's ``numpy.random.Generator``, so a seed
gives the same frames on every machine (OpenCV's warps and blurs are deterministic).

``difficulty`` sets the ranges below; "normal" is meant to look like a queue at a checkpoint
(pass held 20-50 cm from a 640x480 lores stream), "hard" is the tail of bad presentations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import segno

Difficulty = Literal["easy", "normal", "hard"]
Flavour = Literal["card", "phone"]

QUIET_ZONE = 4  # modules of white around the symbol, as the QR spec requires


@dataclass(frozen=True)
class _Ranges:
    qr_frac: tuple[float, float]  # QR side (with quiet zone) / shorter frame side
    tilt_deg: float  # in-plane rotation, +/-
    perspective: float  # corner jitter as a fraction of the QR side
    blur_sigma: tuple[float, float]
    noise_sigma: tuple[float, float]
    contrast: tuple[float, float]  # ink darkness as a fraction of full
    glare_p: float
    glare_peak: tuple[float, float]
    off_screen_p: float  # chance the card/phone runs off the frame edge
    clip_qr: float  # how far (fraction of QR side) the QR itself may run off the edge


RANGES: dict[str, _Ranges] = {
    "easy": _Ranges(
        (0.45, 0.75), 10, 0.02, (0.0, 0.6), (1.0, 3.0), (0.85, 1.0), 0.0, (0, 0), 0.0, 0.0
    ),
    "normal": _Ranges(
        (0.32, 0.7), 180, 0.08, (0.3, 1.2), (2.0, 6.0), (0.5, 1.0), 0.3, (40, 110), 0.2, 0.0
    ),
    "hard": _Ranges(
        (0.22, 0.6), 180, 0.16, (0.8, 2.0), (4.0, 12.0), (0.25, 0.7), 0.6, (90, 200), 0.35, 0.06
    ),
}


def arrival_texts(
    passes: Sequence[str], *, arrival_per_min: float, hold_s: float, fps: float, seed: int = 0
) -> Iterator[str | None]:
    """Frame contents of a checkpoint queue: people arrive at random (Poisson) and each holds
    the next pass in front of the camera for ``hold_s``; between them, empty frames."""
    rng = np.random.default_rng(seed)
    hold = max(1, round(hold_s * fps))
    index = 0
    while True:
        gap = rng.exponential(60.0 / arrival_per_min)
        for _ in range(round(gap * fps)):
            yield None
        text = passes[index % len(passes)] if passes else None
        index += 1
        for _ in range(hold):
            yield text


@lru_cache(maxsize=64)
def qr_modules(text: str) -> np.ndarray:
    """Module matrix (True = dark) with the quiet zone, read-only and cached: encoding
    (mask selection) costs more than drawing a frame. chot QR text is all in the QR
    alphanumeric set, so it is encoded in alphanumeric mode at level M as the protocol
    asks; any other text falls back to segno's choice so tests can render odd payloads."""
    try:
        qr = segno.make_qr(text, error="m", mode="alphanumeric", boost_error=False)
    except ValueError:
        qr = segno.make_qr(text, error="m", boost_error=False)
    modules = np.pad(np.array(qr.matrix, dtype=bool), QUIET_ZONE)
    modules.flags.writeable = False
    return modules


def render_frame(
    text: str | None,
    *,
    size: tuple[int, int] = (640, 480),
    rng: np.random.Generator,
    difficulty: Difficulty = "normal",
    flavour: Flavour | None = None,
    qr_frac: float | None = None,
) -> np.ndarray:
    """A ``size`` = (width, height) uint8 frame showing ``text`` as a QR; ``None`` gives an
    empty scene (the same clutter and lighting, no code). ``flavour`` None picks card or
    phone at random, about half each (the field reports say many people carry cards).
    ``qr_frac`` fixes the QR side / shorter frame side instead of drawing it (size sweeps)."""
    if flavour is None:
        flavour = "card" if rng.random() < 0.5 else "phone"
    r = RANGES[difficulty]
    w, h = size
    frame = _background(rng, w, h)
    qr_side = (qr_frac or rng.uniform(*r.qr_frac)) * min(w, h)
    if text is not None:
        modules = qr_modules(text)
        ppm = max(2, int(np.ceil(2 * qr_side / modules.shape[0])))  # 2x supersampling
        contrast = rng.uniform(*r.contrast)
        if flavour == "card":
            obj, qr_box = _card(rng, modules, ppm, contrast)
        else:
            obj, qr_box = _phone(rng, modules, ppm, contrast)
        frame = _place(rng, frame, obj, qr_box, qr_side, r)
    return _camera(rng, frame, qr_side, r)


def make_card_frame(text: str | None, **kwargs) -> np.ndarray:
    """A printed card on a table (matte, lower contrast, no screen glare)."""
    return render_frame(text, flavour="card", **kwargs)


def make_phone_frame(text: str | None, **kwargs) -> np.ndarray:
    """A phone screen: bright and high contrast inside a dark bezel."""
    return render_frame(text, flavour="phone", **kwargs)


def _qr_image(modules: np.ndarray, ppm: int, dark: float, light: float) -> np.ndarray:
    img = np.where(modules, dark, light).astype(np.float32)
    return np.kron(img, np.ones((ppm, ppm), np.float32))


def _card(rng, modules, ppm, contrast) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Card image and the QR square (x, y, side) inside it, in card pixels."""
    paper = rng.uniform(190, 235)
    ink = paper - contrast * (paper - rng.uniform(20, 60))
    qr = _qr_image(modules, ppm, ink, paper)
    side = qr.shape[0]
    margin = int(side * 0.12)
    card = np.full((side + 2 * margin + int(side * 0.35), side + 2 * margin), paper, np.float32)
    card[margin : margin + side, margin : margin + side] = qr
    y = margin + side + margin // 2  # a few lines of "printed" text under the code
    while y + ppm * 2 < card.shape[0] - margin // 2:
        length = int(rng.uniform(0.3, 1.0) * side)
        card[y : y + ppm * 2, margin : margin + length] = ink
        y += ppm * 4
    return card, (margin, margin, side)


def _phone(rng, modules, ppm, contrast) -> tuple[np.ndarray, tuple[float, float, float]]:
    screen = rng.uniform(215, 255)
    ink = screen - max(contrast, 0.6) * (screen - rng.uniform(0, 30))  # screens stay crisp
    qr = _qr_image(modules, ppm, ink, screen)
    side = qr.shape[0]
    pad, bezel = int(side * 0.08), int(side * 0.07)
    sw, sh = side + 2 * pad, int((side + 2 * pad) * 2.0)
    body = np.full((sh + 2 * bezel, sw + 2 * bezel), rng.uniform(10, 40), np.float32)
    body[bezel : bezel + sh, bezel : bezel + sw] = screen
    top = bezel + int(sh * 0.3)
    body[top : top + side, bezel + pad : bezel + pad + side] = qr
    return body, (bezel + pad, top, side)


def _place(rng, frame, obj, qr_box, qr_side, r: _Ranges) -> np.ndarray:
    """Warp ``obj`` so its QR square lands ``qr_side`` px wide somewhere in the frame."""
    h, w = frame.shape
    qx, qy, qs = qr_box
    scale = qr_side / qs
    angle = np.deg2rad(rng.uniform(-r.tilt_deg, r.tilt_deg))
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    half = qr_side / 2 * (abs(np.cos(angle)) + abs(np.sin(angle)))  # half extent of the QR
    if rng.random() < r.off_screen_p:
        slack = half * r.clip_qr * 2  # may push the QR itself a little over the edge
        cx = rng.choice([half - slack, w - half + slack]) + rng.normal(0, 2)
        cy = rng.uniform(half, max(half, h - half))
    else:
        cx = rng.uniform(half, max(half, w - half))
        cy = rng.uniform(half, max(half, h - half))
    oh, ow = obj.shape
    src = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], np.float32)
    centred = src - np.array([qx + qs / 2, qy + qs / 2], np.float32)
    dst = centred @ rot.T + np.array([cx, cy])
    dst += rng.uniform(-1, 1, dst.shape) * r.perspective * qr_side
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(obj, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(obj), m, (w, h), flags=cv2.INTER_LINEAR)
    # A soft drop shadow around the card/phone, blurred at 1/4 size (a full-size blur this
    # wide costs more than the rest of the frame).
    small = cv2.resize(mask, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(1.0, qr_side * 0.008))
    shadow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * rng.uniform(0, 40)
    return (frame - shadow) * (1 - mask) + warped * mask


def _background(rng, w: int, h: int) -> np.ndarray:
    """A table/wall with smooth shading plus clutter (boxes, edges, stripes) so that empty
    frames are not trivially flat: an empty frame must still cost a decoder real work."""
    coarse = rng.uniform(60, 190, (h // 40 + 2, w // 40 + 2)).astype(np.float32)
    bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    bg += 6 * rng.standard_normal((h, w), dtype=np.float32)  # grain / wood texture
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(-w // 3, w // 3)), y0 + int(rng.integers(-h // 3, h // 3))
        shade = float(rng.uniform(20, 235))
        if rng.random() < 0.5:
            cv2.rectangle(bg, (x0, y0), (x1, y1), shade, thickness=-1)
        else:
            cv2.line(bg, (x0, y0), (x1, y1), shade, thickness=int(rng.integers(1, 6)))
    for _ in range(int(rng.integers(0, 3))):  # keyboard/text-like stripes
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        pitch = int(rng.integers(3, 9))
        for k in range(int(rng.integers(4, 15))):
            y = y0 + k * pitch
            cv2.line(bg, (x0, y), (x0 + int(rng.integers(20, 160)), y), float(rng.uniform(0, 80)))
    return cv2.GaussianBlur(bg, (0, 0), 1.0)


def _camera(rng, img: np.ndarray, qr_side: float, r: _Ranges) -> np.ndarray:
    """Lighting, optics and sensor: uneven light, glare, defocus, noise, 8-bit output."""
    h, w = img.shape
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)
    gx, gy = rng.uniform(-0.35, 0.35, 2).astype(np.float32)
    img = img * (1 + gx * xs[None, :] + gy * ys[:, None])
    if rng.random() < r.glare_p:  # specular reflection off a laminated card or screen
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        s = rng.uniform(0.08, 0.25) * qr_side
        peak = rng.uniform(*r.glare_peak)
        gxs = np.exp(-((np.arange(w, dtype=np.float32) - cx) ** 2) / (2 * s * s))
        gys = np.exp(-((np.arange(h, dtype=np.float32) - cy) ** 2) / (2 * s * s))
        img = img + np.float32(peak) * gys[:, None] * gxs[None, :]  # separable Gaussian
    sigma = rng.uniform(*r.blur_sigma)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img = img + np.float32(rng.uniform(*r.noise_sigma)) * noise
    return np.clip(img, 0, 255).astype(np.uint8)
