"""Shot changes in decoded frames: a cut is a frame whose colour histogram differs from the
previous sampled frame's far more than its neighbours' differences do.

The distance is half the L1 distance of normalised RGB histograms (``bins`` levels per channel),
so 0 is the same picture and 1 shares no colour. A change counts as a cut when it is at least
``threshold`` and at least ``ratio`` times the median change of the ``window`` frame pairs on
each side (an adaptive test: a shot with steady camera motion raises its own bar). It finds hard
cuts; it does not find dissolves or fades, and a large object crossing the frame in one sampled
step can pass for a cut. Cuts closer than ``min_shot_s`` after the previous one are ignored.

Units: frames uint8 ``[T, H, W, 3]``, times in seconds ``[T]``.

Example:
    >>> import numpy as np
    >>> red, blue = np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)
    >>> red[..., 0], blue[..., 2] = 200, 200
    >>> shot_cuts(np.concatenate([red, blue]), np.array([0.0, 0.5, 1.0, 1.5]))
    [1.0]
"""

from __future__ import annotations

from typing import List

import numpy as np


def histograms(frames: np.ndarray, *, bins: int = 8) -> np.ndarray:
    """Normalised RGB histograms ``[T, bins**3]`` (each row sums to 1)."""
    q = (frames.astype(np.int32) * bins) // 256
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    flat = codes.reshape(len(frames), -1)
    out = np.zeros((len(frames), bins**3), np.float64)
    for t in range(len(frames)):
        out[t] = np.bincount(flat[t], minlength=bins**3)
    return out / np.maximum(1, flat.shape[1])


def shot_cuts(
    frames: np.ndarray,
    times_s: np.ndarray,
    *,
    threshold: float = 0.05,
    ratio: float = 4.0,
    window: int = 8,
    min_shot_s: float = 0.5,
    bins: int = 8,
) -> List[float]:
    """Times (s) of the frames that start a new shot."""
    if len(frames) < 2:
        return []
    h = histograms(frames, bins=bins)
    dist = 0.5 * np.abs(np.diff(h, axis=0)).sum(axis=1)
    cuts: List[float] = []
    for i in np.flatnonzero(dist >= threshold):
        around = np.concatenate([dist[max(0, i - window) : i], dist[i + 1 : i + 1 + window]])
        if len(around) and dist[i] < ratio * float(np.median(around)):
            continue
        t = float(times_s[i + 1])
        if not cuts or t - cuts[-1] >= min_shot_s:
            cuts.append(round(t, 3))
    return cuts
