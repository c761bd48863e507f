"""From labelled speech segments to dialogues and their turns (pure functions).

A dialogue ends at a long silence (``gap_s``), or at a shorter one (``cut_gap_s``) during which
the picture cuts to another shot: a change of scene. A dialogue may span shots; MM-DIA's pipeline
cuts the same way, with a vision-language model where this uses the pause and the cut. Within a
dialogue, consecutive segments of one speaker closer than ``merge_gap_s`` are one turn.

Units: seconds.

Example:
    >>> from diadem_ray.annotate.speech import SpeechSegment, Word
    >>> seg = lambda a, b: SpeechSegment(a, b, (Word(a, b, "hi", 0.9),))
    >>> [[(s.start_s, s.end_s) for s in d] for d in split_dialogues([seg(0, 1), seg(1.5, 2), seg(9, 10)], [], gap_s=3)]
    [[(0, 1), (1.5, 2)], [(9, 10)]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from diadem_ray.annotate.speech import SpeechSegment


@dataclass(frozen=True)
class LabelledTurn:
    """One turn: the speaker's label (0-based, by first appearance), its times and text."""

    speaker: int
    start_s: float
    end_s: float
    text: str


def split_dialogues(
    segments: Sequence[SpeechSegment], cuts_s: Sequence[float], *, gap_s: float, cut_gap_s: float = 1.5
) -> List[List[SpeechSegment]]:
    """Segments (in time order) grouped into dialogues."""
    out: List[List[SpeechSegment]] = []
    for s in segments:
        if out:
            prev = out[-1][-1]
            pause = s.start_s - prev.end_s
            cut_between = any(prev.end_s <= c <= s.start_s for c in cuts_s)
            if pause >= gap_s or (pause >= cut_gap_s and cut_between):
                out.append([s])
                continue
            out[-1].append(s)
        else:
            out.append([s])
    return out


def merge_turns(segments: Sequence[SpeechSegment], labels: Sequence[int], *, merge_gap_s: float) -> List[LabelledTurn]:
    """Consecutive segments of one speaker less than ``merge_gap_s`` apart become one turn."""
    turns: List[LabelledTurn] = []
    for s, lab in zip(segments, labels):
        if turns and turns[-1].speaker == lab and s.start_s - turns[-1].end_s < merge_gap_s:
            t = turns[-1]
            turns[-1] = LabelledTurn(lab, t.start_s, s.end_s, f"{t.text} {s.text}")
        else:
            turns.append(LabelledTurn(lab, s.start_s, s.end_s, s.text))
    return turns
