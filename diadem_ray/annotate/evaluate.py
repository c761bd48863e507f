"""How close annotations come to known truth (synthetic clips): concatenated minimum-permutation
WER (cpWER, meeteval: each annotated speaker is matched to the reference speaker that minimises
the errors, so ``SPEAKER_k`` names cost nothing), exact speaker counts, the off-screen-speaker
flag's F1 and exact shot counts.

A video the annotator skipped counts against every measure (no words, no speakers, flag false,
no shots). A video it split into several dialogues is scored as one: its dialogues' turns
together, their speakers kept apart, its shots summed.

Example:
    >>> truth = {"v": Truth(("A", "B"), ("hello there", "fine thanks"), False, 1)}
    >>> found = {"v": Found(("SPEAKER_2", "SPEAKER_1"), ("hello there", "fine thanks"), False, 1)}
    >>> score(truth, found)["cpwer"]
    0.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Tuple

_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Truth:
    speakers: Tuple[str, ...]  # per turn
    texts: Tuple[str, ...]
    off_screen: bool
    shots: int


@dataclass(frozen=True)
class Found:
    speakers: Tuple[str, ...]
    texts: Tuple[str, ...]
    off_screen: bool
    shots: int


def words(text: str) -> str:
    """Lower case, punctuation dropped (Whisper punctuates; scripts punctuate differently)."""
    return " ".join(_WORD.findall(text.lower()))


def _by_speaker(speakers: Tuple[str, ...], texts: Tuple[str, ...]) -> Dict[str, str]:
    out: Dict[str, list] = {}
    for s, t in zip(speakers, texts):
        out.setdefault(s, []).append(words(t))
    return {k: " ".join(v).strip() for k, v in out.items()}


def score(truth: Dict[str, Truth], found: Dict[str, Found]) -> Dict[str, float]:
    """The measures over every video of ``truth`` (a video missing from ``found`` was skipped)."""
    from meeteval.wer.wer.cp import cp_word_error_rate

    errors = length = 0
    count_ok = shots_ok = tp = fp = fn = 0
    for vid, t in truth.items():
        f = found.get(vid, Found((), (), False, 0))
        ref, hyp = _by_speaker(t.speakers, t.texts), _by_speaker(f.speakers, f.texts)
        er = cp_word_error_rate(ref, hyp or {"none": ""})
        errors += int(er.errors)
        length += int(er.length)
        count_ok += len(set(f.speakers)) == len(set(t.speakers))
        shots_ok += f.shots == t.shots
        tp += f.off_screen and t.off_screen
        fp += f.off_screen and not t.off_screen
        fn += t.off_screen and not f.off_screen
    n = max(1, len(truth))
    return {
        "videos": float(len(truth)),
        "cpwer": round(errors / max(1, length), 4),
        "speaker_count_exact": round(count_ok / n, 4),
        "off_screen_f1": round(2 * tp / max(1, 2 * tp + fp + fn), 4),
        "shot_count_exact": round(shots_ok / n, 4),
    }
