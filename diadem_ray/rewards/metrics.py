"""DiaDemBench ASR/REF scores as small frozen objects that add up (docs/metrics.md §1.4–1.7).

A :class:`ClipScore` carries the counts of one clip (groups, ``dt_num``, ``gt_num``, similarity
sum, speaker hits); :class:`Totals` sums clips so benchmark figures come from counts without
re-computation: macro-averaged recall and precision (DiaDemBench's aggregate) and F1.

Example:
    >>> s = score_dialogue(["A: hello there", "B: fine thanks"], ["A: hello there", "B: fine thanks"])
    >>> (s.asr_recall, s.asr_precision, s.ref_recall)
    (1.0, 1.0, 1.0)
    >>> t = s.totals() + s.totals()
    >>> (t.clips, round(t.asr_f1, 3), t.ref_f1)
    (2, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

from diadem_ray.rewards.align import MATCH_THRESHOLD, MAX_MERGE_WINDOW, Group, align
from diadem_ray.rewards.normalize import CleanItem, clean_dialogue
from diadem_ray.rewards.speakers import exact_judge

#: A speaker judge: for each (hypothesis speaker, reference speaker) pair → same person?
SpeakerJudge = Callable[[Sequence[Tuple[str, str]]], Sequence[bool]]


def f1(recall: float, precision: float) -> float:
    """Harmonic mean; 0.0 when both are 0 (DiaDemBench's convention)."""
    denom = recall + precision
    return 2.0 * recall * precision / denom if denom > 0 else 0.0


def _ratio(num: float, den: int) -> float:
    return num / den if den > 0 else 1.0


@dataclass(frozen=True)
class ClipScore:
    """Alignment counts of one clip.

    Attributes:
        clean_dt / clean_gt: cleaned (speaker, content) items of hypothesis and reference.
        groups: matched groups in order.
        dt_num / gt_num: item counts with each merged group counted once.
        similarity_sum: Σ group scores (the ASR numerator).
        ref_hits: groups whose speakers the judge called the same person (REF numerator).
        verdicts: the judge's call for each group, in order (``ref_hits`` = their count).
    """

    clean_dt: Tuple[CleanItem, ...]
    clean_gt: Tuple[CleanItem, ...]
    groups: Tuple[Group, ...]
    dt_num: int
    gt_num: int
    similarity_sum: float
    ref_hits: int
    verdicts: Tuple[bool, ...] = ()

    @property
    def asr_recall(self) -> float:
        return _ratio(self.similarity_sum, self.gt_num)

    @property
    def asr_precision(self) -> float:
        return _ratio(self.similarity_sum, self.dt_num)

    @property
    def ref_recall(self) -> float:
        return _ratio(float(self.ref_hits), self.gt_num)

    @property
    def ref_precision(self) -> float:
        return _ratio(float(self.ref_hits), self.dt_num)

    @property
    def asr_f1(self) -> float:
        return f1(self.asr_recall, self.asr_precision)

    @property
    def ref_f1(self) -> float:
        return f1(self.ref_recall, self.ref_precision)

    def speaker_pairs(self) -> list[Tuple[str, str]]:
        """(hypothesis speaker of the group's first item, reference speaker of its first item)."""
        return [(self.clean_dt[g.dt_indices[0]][0], self.clean_gt[g.gt_indices[0]][0]) for g in self.groups]

    def totals(self) -> "Totals":
        return Totals(
            clips=1,
            asr_recall_sum=self.asr_recall,
            asr_precision_sum=self.asr_precision,
            ref_recall_sum=self.ref_recall,
            ref_precision_sum=self.ref_precision,
            similarity_sum=self.similarity_sum,
            ref_hits=self.ref_hits,
            dt_num=self.dt_num,
            gt_num=self.gt_num,
        )


@dataclass(frozen=True)
class Totals:
    """Sums over clips; every benchmark figure derives from these counts."""

    clips: int = 0
    asr_recall_sum: float = 0.0
    asr_precision_sum: float = 0.0
    ref_recall_sum: float = 0.0
    ref_precision_sum: float = 0.0
    similarity_sum: float = 0.0
    ref_hits: int = 0
    dt_num: int = 0
    gt_num: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        if not isinstance(other, Totals):
            return NotImplemented
        return Totals(*(a + b for a, b in zip(self._values(), other._values())))  # type: ignore[arg-type]

    def __radd__(self, other: object) -> "Totals":
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    def _values(self) -> Tuple[float, ...]:
        return (
            self.clips,
            self.asr_recall_sum,
            self.asr_precision_sum,
            self.ref_recall_sum,
            self.ref_precision_sum,
            self.similarity_sum,
            self.ref_hits,
            self.dt_num,
            self.gt_num,
        )

    def _mean(self, total: float) -> float:
        return total / self.clips if self.clips else 0.0

    @property
    def asr_f1(self) -> float:
        """F1 of the macro-averaged ASR recall and precision (0..1)."""
        return f1(self._mean(self.asr_recall_sum), self._mean(self.asr_precision_sum))

    @property
    def ref_f1(self) -> float:
        """F1 of the macro-averaged REF recall and precision (0..1)."""
        return f1(self._mean(self.ref_recall_sum), self._mean(self.ref_precision_sum))

    def table_cell(self) -> str:
        """``"REF / ASR"`` ×100 with one decimal, ``"- / -"`` for no clips (DiaDemBench form)."""
        if self.clips == 0:
            return "- / -"
        return f"{self.ref_f1 * 100:.1f} / {self.asr_f1 * 100:.1f}"


def score_clean(
    dt: Sequence[CleanItem],
    gt: Sequence[CleanItem],
    *,
    judge: Optional[SpeakerJudge] = None,
    threshold: float = MATCH_THRESHOLD,
    max_merge_window: int = MAX_MERGE_WINDOW,
    max_work: Optional[int] = None,
) -> ClipScore:
    """Align cleaned items and count. ``judge`` defaults to exact normalised speaker equality;
    ``max_work`` bounds the alignment (:func:`~diadem_ray.rewards.align.align`)."""
    groups = tuple(align(dt, gt, threshold=threshold, max_merge_window=max_merge_window, max_work=max_work))
    dt_num = len(dt) - sum(len(g.dt_indices) - 1 for g in groups)
    gt_num = len(gt) - sum(len(g.gt_indices) - 1 for g in groups)
    score = ClipScore(tuple(dt), tuple(gt), groups, dt_num, gt_num, sum(g.score for g in groups), 0)
    if not groups:
        return score
    pairs = score.speaker_pairs()
    verdicts = list((judge or exact_judge)(pairs))
    if len(verdicts) != len(pairs):
        raise ValueError(f"speaker judge returned {len(verdicts)} verdicts for {len(pairs)} groups")
    calls = tuple(bool(v) for v in verdicts)
    return ClipScore(score.clean_dt, score.clean_gt, groups, dt_num, gt_num, score.similarity_sum, sum(calls), calls)


def score_dialogue(
    dt_lines: Sequence[str],
    gt_lines: Sequence[str],
    *,
    judge: Optional[SpeakerJudge] = None,
    threshold: float = MATCH_THRESHOLD,
    max_merge_window: int = MAX_MERGE_WINDOW,
    max_work: Optional[int] = None,
) -> ClipScore:
    """Clean ``"<speaker>: <utterance>"`` lines of hypothesis and reference, then score."""
    return score_clean(
        clean_dialogue(dt_lines),
        clean_dialogue(gt_lines),
        judge=judge,
        threshold=threshold,
        max_merge_window=max_merge_window,
        max_work=max_work,
    )
