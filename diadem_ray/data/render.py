"""Drawing the people of a synthetic clip (numpy only): shared by the renderer and its detector.

A person is a shirt-coloured body, a skin-coloured head, hair (short or long, dark or — for the
old — grey) and a mouth whose opening follows the loudness of that person's own speech. Colours come
from the scene vocabulary (:mod:`diadem_ray.scene`), which ``tiny_av``'s front-end
(:mod:`diadem_ray.models.tiny_av_frontend`) reads too, so it can find people in decoded frames; it
never sees anything but the pixels.

Units: frames are ``uint8 [height, width, 3]``; positions and sizes in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from diadem_ray.scene import SCENE

@dataclass(frozen=True)
class Figure:
    """One person as drawn: ``hair`` is ``"short"``, ``"long"``, ``"grey-short"`` or ``"grey-long"``."""

    color: str
    hair: str


def _disc(img: np.ndarray, cy: float, cx: float, r: float, color) -> None:
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    img[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = color


def _rect(img: np.ndarray, y0: float, y1: float, x0: float, x1: float, color) -> None:
    h, w = img.shape[:2]
    img[max(0, int(y0)):min(h, int(y1)), max(0, int(x0)):min(w, int(x1))] = color


def draw_person(img: np.ndarray, fig: Figure, *, cx: float, ground_y: float, scale: float, mouth_open: float) -> None:
    """Draw ``fig`` standing on ``ground_y`` centred at ``cx``; ``mouth_open`` in [0, 1]."""
    r = 9.0 * scale
    body_h, body_w = 30.0 * scale, 26.0 * scale
    head_cy = ground_y - body_h - r * 0.9
    _rect(img, ground_y - body_h, ground_y, cx - body_w / 2, cx + body_w / 2, SCENE.shirts[fig.color])
    hair = SCENE.hair_grey if fig.hair.startswith("grey") else SCENE.hair_dark
    if fig.hair.endswith("long"):
        _rect(img, head_cy - r * 0.2, head_cy + r * 1.5, cx - r * 1.25, cx + r * 1.25, hair)
    _disc(img, head_cy - r * 0.35, cx, r * 0.95, hair)
    _disc(img, head_cy, cx, r, SCENE.skin)
    _disc(img, head_cy - r * 0.15, cx - r * 0.38, max(1.0, r * 0.12), SCENE.eye)
    _disc(img, head_cy - r * 0.15, cx + r * 0.38, max(1.0, r * 0.12), SCENE.eye)
    mh = max(1.0, r * (0.08 + 0.45 * float(np.clip(mouth_open, 0.0, 1.0))))
    _rect(img, head_cy + r * 0.45 - mh / 2, head_cy + r * 0.45 + mh / 2 + 1, cx - r * 0.35, cx + r * 0.35, SCENE.mouth)


def background(height: int, width: int, wall: Tuple[int, int, int]) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = wall
    img[int(height * 0.8):] = (95, 85, 75)  # floor
    return img
