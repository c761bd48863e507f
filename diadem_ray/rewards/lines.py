"""Which caption lines got their speaker right: the per-line view of the REF score.

DiaDemBench's REF counts, over the aligned groups of a clip, those whose hypothesis speaker the
judge accepts. :func:`line_hits` returns the same verdicts line by line, each with where the line's
speaker phrase sits in the caption, so GRPO can credit the speaker tokens of each line on their own
(see :func:`diadem_ray.grpo.line_advantages`). Written by hand: it maps DiaDemBench's cleaned items
back to caption lines, which no library knows about.

Example:
    >>> from diadem_ray.rewards.extract import extract_structured_spans
    >>> from diadem_ray.rewards.metrics import score_dialogue
    >>> from diadem_ray.types import Turn
    >>> caption = 'the man: "Hello there."\\nthe man: "Fine, thanks."'
    >>> spans = extract_structured_spans(caption)
    >>> hyp = [t for t, _ in spans]
    >>> ref = [Turn("the man", "Hello there."), Turn("the woman", "Fine, thanks.")]
    >>> score = score_dialogue([t.line() for t in hyp], [t.line() for t in ref])
    >>> [(caption[h.start:h.end], h.ref_index, h.hit) for h in line_hits(hyp, [s for _, s in spans], score)]
    [('the man', 0, True), ('the man', 1, False)]
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from diadem_ray.rewards.metrics import ClipScore
from diadem_ray.rewards.normalize import clean_line
from diadem_ray.types import LineHit, Turn


def line_hits(hyp: Sequence[Turn], spans: Sequence[Tuple[int, int]], score: ClipScore) -> Tuple[LineHit, ...]:
    """The matched lines of one caption, in caption order.

    Args:
        hyp: the turns extracted from the caption (``m``), in order.
        spans: ``m`` character spans of their speaker phrases in the caption.
        score: the clip's :class:`ClipScore` computed from exactly these turns' lines.

    Lines the alignment left unmatched are not returned (they have no reference line to be
    compared on); every line of a merged group gets the group's verdict and first reference index.
    """
    if len(hyp) != len(spans):
        raise ValueError(f"{len(hyp)} turns but {len(spans)} speaker spans")
    kept: List[int] = [i for i, t in enumerate(hyp) if clean_line(t.line()) is not None]  # clean_dialogue's rule
    if len(kept) != len(score.clean_dt):
        raise ValueError(
            f"the score was computed from {len(score.clean_dt)} cleaned lines, these turns give {len(kept)}"
        )
    if len(score.verdicts) != len(score.groups):
        raise ValueError("the score carries no per-group verdicts (build it with metrics.score_clean)")
    out: List[LineHit] = []
    for group, verdict in zip(score.groups, score.verdicts):
        for d in group.dt_indices:
            start, end = spans[kept[d]]
            out.append(LineHit(start, end, group.gt_indices[0], bool(verdict)))
    return tuple(out)
