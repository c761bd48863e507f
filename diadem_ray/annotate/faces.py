"""Who is on screen and whose mouth moves: the visual evidence for a speaker's visibility.

Two finders, chosen by ``annotate.faces``:

* ``opencv`` — OpenCV's bundled frontal-face Haar cascade, for real footage. Faces are tracked
  from frame to frame by the nearest centre; a face's mouth activity is the mean absolute change
  of the lower third of its box between consecutive sampled frames. It sees frontal faces of at
  least ``min_face_px`` pixels; it misses profiles, faces turned away, small or dark faces, and it
  cannot tell speech from chewing or laughing. A mouth that moves while someone speaks is
  evidence, not proof, that that person is the speaker.
* ``scene`` — the perception for the synthetic world (:mod:`diadem_ray.models.tiny_av_frontend`):
  the drawn people, identified by shirt colour, with their measured mouth opening. It sees
  nothing in real footage.

Units: frames uint8 ``[T, H, W, 3]``, times in seconds; mouth values are unitless (the scene
finder's opening relative to the head's width; OpenCV's mean absolute pixel change / 255).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Protocol, Set, Tuple

import numpy as np

FINDERS = ("opencv", "scene")


@dataclass
class Tracks:
    """Per track id: ``(time_s, mouth value)`` observations, in time order."""

    mouth: Dict[str, List[Tuple[float, float]]] = field(default_factory=dict)
    counts: List[Tuple[float, int]] = field(default_factory=list)  # (time_s, faces seen in that frame)

    def max_in_frame(self, start_s: float = 0.0, end_s: float = float("inf")) -> int:
        """The most faces seen in one sampled frame between the two times."""
        return max((n for t, n in self.counts if start_s <= t <= end_s), default=0)

    def between(self, start_s: float, end_s: float) -> "Tracks":
        """The observations between the two times."""
        out = Tracks(counts=[(t, n) for t, n in self.counts if start_s <= t <= end_s])
        for k, obs in self.mouth.items():
            kept = [(t, v) for t, v in obs if start_s <= t <= end_s]
            if kept:
                out.mouth[k] = kept
        return out

    def add(self, track: str, time_s: float, value: float) -> None:
        self.mouth.setdefault(track, []).append((time_s, value))


class FaceFinder(Protocol):
    name: str

    def track(self, frames: np.ndarray, times_s: np.ndarray) -> Tracks: ...

    def movers(self, tracks: Tracks, start_s: float, end_s: float) -> Set[str]: ...

    def people_on_screen(self, tracks: Tracks) -> int: ...


def visible(tracks: Tracks, start_s: float, end_s: float, *, min_frames: int = 2) -> Set[str]:
    """The tracks observed in at least ``min_frames`` sampled frames between the two times."""
    return {k for k, obs in tracks.between(start_s, end_s).mouth.items() if len(obs) >= min_frames}


class SceneFaces:
    """The synthetic world's people (see the module docstring)."""

    name = "scene"

    def __init__(self, *, min_opening_range: float = 0.03) -> None:
        self.min_opening_range = min_opening_range

    def track(self, frames: np.ndarray, times_s: np.ndarray) -> Tracks:
        from diadem_ray.models.tiny_av_frontend import people_in_frame

        out = Tracks()
        for img, t in zip(frames, times_s):
            seen = people_in_frame(img)
            out.counts.append((float(t), len(seen)))
            for ident, opening, _ in seen:
                out.add(ident.split("/")[0], float(t), opening)  # shirt colours are unique within a clip
        return out

    def movers(self, tracks: Tracks, start_s: float, end_s: float) -> Set[str]:
        within = tracks.between(start_s, end_s).mouth
        return {
            who
            for who, obs in within.items()
            if len(obs) >= 2 and max(v for _, v in obs) - min(v for _, v in obs) > self.min_opening_range
        }

    def people_on_screen(self, tracks: Tracks) -> int:
        return len(tracks.mouth)


class OpenCvFaces:
    """OpenCV's frontal-face Haar cascade with centre tracking (see the module docstring)."""

    name = "opencv"

    def __init__(self, *, min_face_px: int = 24, min_mouth_motion: float = 0.02) -> None:
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade did not load from {path}; reinstall opencv-python-headless")
        self.min_face_px = min_face_px
        self.min_mouth_motion = min_mouth_motion

    def faces(self, frame: np.ndarray) -> List[Tuple[int, int, int, int]]:
        """``(x, y, w, h)`` of the frontal faces in one RGB frame."""
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_face_px, self.min_face_px)
        )
        return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]

    def track(self, frames: np.ndarray, times_s: np.ndarray) -> Tracks:
        import cv2

        out = Tracks()
        last: Dict[str, Tuple[float, float, float, np.ndarray]] = {}  # track -> (cx, cy, w, mouth patch)
        for img, t in zip(frames, times_s):
            gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
            boxes = self.faces(img)
            out.counts.append((float(t), len(boxes)))
            now: Dict[str, Tuple[float, float, float, np.ndarray]] = {}
            for x, y, w, h in boxes:
                cx, cy = x + w / 2, y + h / 2
                patch = cv2.resize(gray[y + 2 * h // 3 : y + h, x + w // 4 : x + 3 * w // 4], (16, 8)).astype(
                    np.float32
                )
                near = [
                    k for k, (px, py, pw, _) in last.items() if k not in now and np.hypot(px - cx, py - cy) < 0.5 * pw
                ]
                if near:
                    key = min(near, key=lambda k: np.hypot(last[k][0] - cx, last[k][1] - cy))
                    out.add(key, float(t), float(np.abs(patch - last[key][3]).mean()) / 255.0)
                else:
                    key = f"face{len(out.mouth) + len(now)}"
                    out.mouth.setdefault(key, [])
                now[key] = (cx, cy, float(w), patch)
            last = now
        return out

    def movers(self, tracks: Tracks, start_s: float, end_s: float) -> Set[str]:
        within = tracks.between(start_s, end_s).mouth
        return {who for who, obs in within.items() if float(np.mean([v for _, v in obs])) > self.min_mouth_motion}

    def people_on_screen(self, tracks: Tracks) -> int:
        return tracks.max_in_frame()


def face_finder(name: str) -> FaceFinder:
    if name == "opencv":
        return OpenCvFaces()
    if name == "scene":
        return SceneFaces()
    raise ValueError(f"annotate.faces {name!r}: choose one of {', '.join(FINDERS)}")
