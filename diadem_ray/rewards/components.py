"""Reward components beyond DiaDemBench's ASR/REF (docs/metrics.md §4).

Each component is a plain function ``(ctx: Context, **params) -> float``. Accuracy-like components
are in [0, 1] (higher is better); penalties are in [-1, 0]. cpWER/tcpWER come from meeteval
(the reference implementation) and WER/CER from jiwer; nothing here re-implements them.

Example:
    >>> from diadem_ray.types import Turn
    >>> ref = (Turn("A", "hello there", 0.0, 1.0), Turn("B", "fine thanks", 1.0, 2.0))
    >>> ctx = Context(caption="", hyp=ref, ref=ref, response_tokens=10)
    >>> cpwer_accuracy(ctx), temporal_iou(ctx), wer_accuracy(ctx)
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, List, Optional, Sequence, TypeGuard

from diadem_ray.rewards.metrics import ClipScore, SpeakerJudge, score_dialogue
from diadem_ray.types import Turn

_WORDS = re.compile(r"[\w']+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass
class Context:
    """Everything a component may look at for one caption.

    Attributes:
        caption: the generated text.
        hyp: turns extracted from the caption.
        ref: the reference dialogue.
        response_tokens: generated token count (length penalty).
        judge: speaker judge for REF (``None`` = exact).
    """

    caption: str
    hyp: Sequence[Turn]
    ref: Sequence[Turn]
    response_tokens: int = 0
    judge: Optional[SpeakerJudge] = None

    @cached_property
    def clip_score(self) -> ClipScore:
        """The DiaDemBench alignment, computed once and shared by asr_* and ref_*."""
        return score_dialogue([t.line() for t in self.hyp], [t.line() for t in self.ref], judge=self.judge)


def _normalize_words(text: str) -> str:
    """Lowercase words; CJK characters become single-character words (CER-like)."""
    text = _CJK.sub(lambda m: f" {m.group(0)} ", text.lower())
    return " ".join(_WORDS.findall(text))


def asr_f1(ctx: Context) -> float:
    return ctx.clip_score.asr_f1


def ref_f1(ctx: Context) -> float:
    return ctx.clip_score.ref_f1


def asr_recall(ctx: Context) -> float:
    return ctx.clip_score.asr_recall


def ref_recall(ctx: Context) -> float:
    return ctx.clip_score.ref_recall


def _by_speaker(turns: Sequence[Turn]) -> Dict[str, str]:
    from diadem_ray.rewards.speakers import normalize_speaker

    out: Dict[str, List[str]] = {}
    for t in turns:
        out.setdefault(normalize_speaker(t.speaker) or "?", []).append(_normalize_words(t.text))
    return {k: " ".join(v) for k, v in out.items()}


def cpwer_accuracy(ctx: Context) -> float:
    """``1 − min(1, cpWER)`` of speaker-concatenated transcripts (meeteval, Hungarian speaker map)."""
    from meeteval.wer.wer.cp import cp_word_error_rate

    ref, hyp = _by_speaker(ctx.ref), _by_speaker(ctx.hyp)
    if not any(ref.values()):
        return 1.0 if not any(hyp.values()) else 0.0
    er = cp_word_error_rate(ref, hyp or {"?": ""})
    return max(0.0, 1.0 - float(er.error_rate))


def _all_set(values: Sequence[Optional[float]]) -> TypeGuard[Sequence[float]]:
    return all(v is not None for v in values)


def _seglst(turns: Sequence[Turn]) -> Any:
    from meeteval.io import SegLST

    from diadem_ray.rewards.speakers import normalize_speaker

    rows = []
    for t in turns:
        if t.start_s is None or t.end_s is None:
            raise ValueError(f"turn {t.speaker!r}: tcpWER needs start_s and end_s on every turn")
        rows.append(
            {
                "session_id": "clip",
                "speaker": normalize_speaker(t.speaker) or "?",
                "words": _normalize_words(t.text),
                "start_time": float(t.start_s),
                "end_time": float(max(t.end_s, t.start_s)),
            }
        )
    return SegLST(rows)


def tcpwer_accuracy(ctx: Context, collar_s: float = 5.0) -> float:
    """``1 − min(1, tcpWER)`` (meeteval, ``collar_s`` seconds); 0 when the caption has no times."""
    from meeteval.wer.wer.time_constrained import time_constrained_minimum_permutation_word_error_rate

    if any(t.start_s is None or t.end_s is None for t in ctx.ref):
        raise ValueError("tcpwer needs reference turns with start_s/end_s")
    if not ctx.hyp or any(t.start_s is None or t.end_s is None for t in ctx.hyp):
        return 0.0
    if not any(_normalize_words(t.text) for t in ctx.ref):
        return 1.0
    er = time_constrained_minimum_permutation_word_error_rate(_seglst(ctx.ref), _seglst(ctx.hyp), collar=collar_s)
    return max(0.0, 1.0 - float(er.error_rate))


def wer_accuracy(ctx: Context) -> float:
    """``1 − min(1, WER)`` of the whole transcript, speakers ignored (jiwer; CJK scored per character)."""
    import jiwer

    ref = _normalize_words(" ".join(t.text for t in ctx.ref))
    hyp = _normalize_words(" ".join(t.text for t in ctx.hyp))
    if not ref:
        return 1.0 if not hyp else 0.0
    if not hyp:
        return 0.0
    return max(0.0, 1.0 - float(jiwer.wer(ref, hyp)))


def _iou(a: Turn, b: Turn) -> float:
    if a.start_s is None or a.end_s is None or b.start_s is None or b.end_s is None:
        return 0.0
    inter = max(0.0, min(a.end_s, b.end_s) - max(a.start_s, b.start_s))
    union = max(a.end_s, b.end_s) - min(a.start_s, b.start_s)
    return inter / union if union > 0 else float(a.start_s == b.start_s)


def temporal_iou(ctx: Context) -> float:
    """Mean IoU over reference turns of the time span of the hypothesis turn(s) aligned to them
    (D-ORCA's sentence-level IoU); unmatched references and turns without times count 0."""
    if not ctx.ref:
        return 1.0 if not ctx.hyp else 0.0
    total = 0.0
    score = ctx.clip_score
    # Clean lists drop colon-less lines; our turns always have one, so indices coincide.
    for g in score.groups:
        hyp = [ctx.hyp[i] for i in g.dt_indices]
        ref = [ctx.ref[j] for j in g.gt_indices]
        h_start, h_end = [t.start_s for t in hyp], [t.end_s for t in hyp]
        r_start, r_end = [t.start_s for t in ref], [t.end_s for t in ref]
        if not (_all_set(h_start) and _all_set(h_end) and _all_set(r_start) and _all_set(r_end)):
            continue
        span_h = Turn("", "", min(h_start), max(h_end))
        span_r = Turn("", "", min(r_start), max(r_end))
        total += _iou(span_h, span_r) * len(ref)
    return total / len(ctx.ref)


def format_ok(ctx: Context) -> float:
    """1 when the caption yields at least one dialogue line (0 when the reference has none and
    the caption invents some)."""
    if not ctx.ref:
        return 1.0 if not ctx.hyp else 0.0
    return 1.0 if ctx.hyp else 0.0


def length_penalty(ctx: Context, max_tokens: float = 512.0) -> float:
    """``−min(1, excess / max_tokens)`` for responses longer than ``max_tokens`` tokens."""
    excess = max(0.0, ctx.response_tokens - max_tokens)
    return -min(1.0, excess / max_tokens)


def repetition_penalty(ctx: Context, ngram: float = 4) -> float:
    """``−`` the fraction of repeated word n-grams in the caption (degenerate loops → −1)."""
    n = int(ngram)
    words = ctx.caption.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return -(1.0 - len(set(grams)) / len(grams))
