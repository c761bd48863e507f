"""Adaptive-merge monotonic alignment of hypothesis to reference utterances (docs/metrics.md §1.3).

Written by hand (no library implements DiaDemBench's merge DP). It returns exactly the groups and
scores of the public scorer, only faster:

* Levenshtein distances come from rapidfuzz (C); the whole single-item matrix in one ``cdist``.
* Merged strings are built once: joining contents with a space and then removing whitespace
  equals concatenating the whitespace-free contents.
* Candidates that cannot change the result are skipped: one whose upper bound
  (``min(len)/max(len)``, the best similarity two lengths allow) is clearly ≤ the threshold, and
  one whose ``dp + bound`` cannot strictly beat the current best. Float rounding is respected with
  a margin, so every decision the reference makes is made the same way.

Example:
    >>> dt = [("A", "hello there"), ("A", "how are you"), ("B", "fine")]
    >>> gt = [("A", "hello there how are you"), ("B", "fine")]
    >>> [(g.dt_indices, g.gt_indices, round(g.score, 3)) for g in align(dt, gt)]
    [((0, 1), (0,), 1.0), ((2,), (1,), 1.0)]
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from diadem_ray.rewards.normalize import CleanItem, squeeze

MATCH_THRESHOLD = 0.6
MAX_MERGE_WINDOW = 6
_BOUND_MARGIN = 1e-9  # covers float rounding between a length bound and the computed similarity


class Group(NamedTuple):
    """One matched group: consecutive hypothesis items against consecutive reference items.

    Attributes:
        dt_indices: indices into the cleaned hypothesis list (ascending, consecutive).
        gt_indices: indices into the cleaned reference list (ascending, consecutive).
        score: the group's similarity in (threshold, 1] (the DP increment, as the reference).

    A NamedTuple (immutable, and several times cheaper to build than a frozen dataclass).
    """

    dt_indices: Tuple[int, ...]
    gt_indices: Tuple[int, ...]
    score: float


def _merges(items: Sequence[CleanItem], window: int) -> List[List[str]]:
    """``out[i][k-1]``: whitespace-free concatenation of items ``i-k+1 … i`` (same speaker run).

    The run stops at the first item (going back) whose speaker differs from item ``i``'s.
    """
    squeezed = [squeeze(c) for _, c in items]
    out: List[List[str]] = []
    for i, (speaker, _) in enumerate(items):
        merged = [squeezed[i]]
        if i == 0 or items[i - 1][0] != speaker:  # the common case: a run of one
            out.append(merged)
            continue
        for k in range(2, min(window, i + 1) + 1):
            idx = i - k + 1
            if items[idx][0] != speaker:
                break
            merged.append(squeezed[idx] + merged[-1])
        out.append(merged)
    return out


def _sim(a: str, b: str, threshold: float) -> float:
    """Similarity as the reference computes it, or -1.0 when it surely is ≤ ``threshold``."""
    la, lb = len(a), len(b)
    longest = la if la > lb else lb
    if longest == 0:
        return 1.0
    shortest = lb if la > lb else la
    if shortest / longest < threshold - _BOUND_MARGIN:
        return -1.0
    # Any distance above this bound gives a similarity clearly below the threshold.
    cutoff = int(longest * (1.0 - threshold)) + 1
    dist = Levenshtein.distance(a, b, score_cutoff=cutoff)
    if dist > cutoff:
        return -1.0
    return 1.0 - dist / longest


class AlignmentTooLarge(ValueError):
    """An alignment over its work budget (:func:`align`'s ``max_work``)."""


#: Work units (see :func:`align`) per edit distance computed, and characters² per unit.
DISTANCE_UNITS = 5
CHAR_PAIRS_PER_UNIT = 4096


def alignment_lookups(
    dt: Sequence[CleanItem], gt: Sequence[CleanItem], *, max_merge_window: int = MAX_MERGE_WINDOW
) -> int:
    """The number of (cell, candidate) similarity look-ups :func:`align` makes, exactly: Σ_i r_i ·
    Σ_j s_j, where r_i (s_j) is how many items item i (j) can merge back over — 1 for a line whose
    speaker differs from the line before, up to ``max_merge_window``. O(m + n).

    >>> alignment_lookups([("A", "x"), ("A", "y")], [("A", "x"), ("B", "y")])
    6
    """

    def runs(items: Sequence[CleanItem]) -> int:
        total, run = 0, 0
        for i, (speaker, _) in enumerate(items):
            run = run + 1 if i and items[i - 1][0] == speaker else 1
            total += min(run, max_merge_window)
        return total

    return runs(dt) * runs(gt)


def align(
    dt: Sequence[CleanItem],
    gt: Sequence[CleanItem],
    *,
    threshold: float = MATCH_THRESHOLD,
    max_merge_window: int = MAX_MERGE_WINDOW,
    max_work: Optional[int] = None,
) -> List[Group]:
    """Align cleaned hypothesis items ``dt`` (m) to reference items ``gt`` (n).

    Maximises the sum of group similarities over monotonic groupings (see module doc); returns
    the groups in order. Cost: O(m·n·w²) similarity look-ups in the worst case (w = window),
    O(m·n) for dialogues whose consecutive lines change speaker.

    ``max_work`` (``None``: unbounded) bounds the cost for callers that must answer in bounded
    time; over it, :class:`AlignmentTooLarge` is raised and nothing is returned. A work unit is
    one similarity look-up (:func:`alignment_lookups`, counted before any work); each edit
    distance computed adds ``DISTANCE_UNITS`` plus len(a)·len(b) / ``CHAR_PAIRS_PER_UNIT`` (all
    single items up front, merged candidates as the search reaches them, checked after each row).
    On a 2-core x86 box one unit is about 0.2 µs (docs/rewards.md). Within the budget the result
    is unchanged.
    """
    m, n = len(dt), len(gt)
    if m == 0 or n == 0:
        return []
    dmerge = _merges(dt, max_merge_window)
    gmerge = _merges(gt, max_merge_window)
    spent = 0
    budget = -1 if max_work is None else max_work
    if budget >= 0:
        chars = sum(len(r[0]) for r in dmerge) * sum(len(r[0]) for r in gmerge)
        spent = (
            alignment_lookups(dt, gt, max_merge_window=max_merge_window)
            + DISTANCE_UNITS * m * n
            + chars // CHAR_PAIRS_PER_UNIT
        )
        _check_work(spent, budget, m, n)
    single = _single_similarities([r[0] for r in dmerge], [r[0] for r in gmerge], threshold)
    dp = [[0.0] * (n + 1) for _ in range(m + 1)]
    step = [[(0, 0)] * (n + 1) for _ in range(m + 1)]
    gruns = [len(r) for r in gmerge]
    for i in range(1, m + 1):
        drow = dmerge[i - 1]
        drun = len(drow)
        dp_i, dp_prev, step_i, srow = dp[i], dp[i - 1], step[i], single[i - 1]
        for j in range(1, n + 1):
            skip_dt, skip_gt = dp_prev[j], dp_i[j - 1]
            if skip_dt >= skip_gt:
                best, best_step = skip_dt, _SKIP_DT
            else:
                best, best_step = skip_gt, _SKIP_GT
            s = srow[j - 1]  # 1 against 1; -1.0 when not above the threshold
            if s > threshold and dp_prev[j - 1] + s > best:
                best, best_step = dp_prev[j - 1] + s, _ONE_ONE
            if drun > 1 or gruns[j - 1] > 1:
                best, best_step, used = _merge_candidates(dp, i, j, drow, gmerge[j - 1], best, best_step, threshold)
                spent += used
            dp_i[j] = best
            step_i[j] = best_step
        if budget >= 0:
            _check_work(spent, budget, m, n)
    return _backtrack(dp, step, m, n)


def _check_work(spent: int, budget: int, m: int, n: int) -> None:
    if spent > budget:
        raise AlignmentTooLarge(
            f"aligning {m} against {n} lines needs more than {budget:,} work units ({spent:,} counted when stopped)"
        )


_SKIP_DT, _SKIP_GT, _ONE_ONE = (1, 0), (0, 1), (1, 1)


def _single_similarities(d1: List[str], g1: List[str], threshold: float) -> List[List[float]]:
    """``[m][n]`` similarities of single items (one C call), -1.0 where not above ``threshold``.

    numpy's float64 division and subtraction round exactly as Python's, so values are identical
    to the reference's ``1 - d / max_len``.
    """
    dist = cdist(d1, g1, scorer=Levenshtein.distance, dtype=np.int64, workers=1)
    longest = np.maximum(
        np.fromiter(map(len, d1), np.int64, len(d1))[:, None], np.fromiter(map(len, g1), np.int64, len(g1))[None, :]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = 1.0 - dist / longest
    sim[longest == 0] = 1.0
    out: List[List[float]] = np.where(sim > threshold, sim, -1.0).tolist()
    return out


def _merge_candidates(
    dp: List[List[float]],
    i: int,
    j: int,
    drow: Sequence[str],
    grow: Sequence[str],
    best: float,
    best_step: Tuple[int, int],
    threshold: float,
) -> Tuple[float, Tuple[int, int], int]:
    """Candidates with a merge on either side, in the reference's order, after 1-against-1.
    Returns ``(best, best_step, work units of the edit distances computed)``."""
    used = 0
    # k = 2 … run hypothesis items against reference item j.
    b = grow[0]
    for k in range(2, len(drow) + 1):
        base = dp[i - k][j - 1]
        a = drow[k - 1]
        bound = _bound(a, b)
        if base + bound <= best:
            continue
        if bound >= threshold:
            used += DISTANCE_UNITS + len(a) * len(b) // CHAR_PAIRS_PER_UNIT
        sim = _sim(a, b, threshold)
        if sim > threshold and base + sim > best:
            best, best_step = base + sim, (k, 1)
    # Hypothesis item i against l = 2 … run reference items.
    a = drow[0]
    dp_prev = dp[i - 1]
    for l in range(2, len(grow) + 1):
        base = dp_prev[j - l]
        b = grow[l - 1]
        bound = _bound(a, b)
        if base + bound <= best:
            continue
        if bound >= threshold:
            used += DISTANCE_UNITS + len(a) * len(b) // CHAR_PAIRS_PER_UNIT
        sim = _sim(a, b, threshold)
        if sim > threshold and base + sim > best:
            best, best_step = base + sim, (1, l)
    # k > 1 hypothesis items against l > 1 reference items, k-major as the reference.
    for k in range(2, len(drow) + 1):
        a = drow[k - 1]
        dp_k = dp[i - k]
        for l in range(2, len(grow) + 1):
            base = dp_k[j - l]
            b = grow[l - 1]
            bound = _bound(a, b)
            if base + bound <= best:
                continue
            if bound >= threshold:
                used += DISTANCE_UNITS + len(a) * len(b) // CHAR_PAIRS_PER_UNIT
            sim = _sim(a, b, threshold)
            if sim > threshold and base + sim > best:
                best, best_step = base + sim, (k, l)
    return best, best_step, used


def _bound(a: str, b: str) -> float:
    """An upper bound on the similarity of ``a`` and ``b`` from their lengths (plus margin)."""
    la, lb = len(a), len(b)
    if la == lb:
        return 1.0 + _BOUND_MARGIN
    return (la / lb if la < lb else lb / la) + _BOUND_MARGIN


def _backtrack(dp: List[List[float]], step: List[List[Tuple[int, int]]], m: int, n: int) -> List[Group]:
    groups: List[Group] = []
    i, j = m, n
    while i > 0 and j > 0:
        si, sj = step[i][j]
        if si == 0 and sj == 0:
            break
        prev, cur = dp[i - si][j - sj], dp[i][j]
        if cur > prev + 1e-6:
            groups.append(Group(tuple(range(i - si, i)), tuple(range(j - sj, j)), cur - prev))
        i -= si
        j -= sj
    groups.reverse()
    return groups
