"""Aggregation over seeds for ``diadem-ray compare``: a group's mean, standard deviation and count,
and a confidence interval for the difference between a group and a baseline group.

The difference is paired by seed when the two groups share at least two seeds (runs of one seed
start from the same SFT policy and see the same clips, so the per-seed difference removes that
shared variation): the mean of the per-seed differences with a Student-t interval on n − 1 degrees
of freedom, over the shared seeds only. Otherwise the groups are compared unpaired: the difference
of means with Welch's interval (Welch–Satterthwaite degrees of freedom). With fewer than two values
on a side (or two shared seeds when paired) no interval exists and its bounds are NaN.

    >>> d = difference({0: 13.0, 1: 14.0, 2: 18.0}, {0: 10.0, 1: 12.0, 2: 14.0})
    >>> (d.mean, round(d.low, 3), round(d.high, 3), d.n, d.paired)
    (3.0, 0.516, 5.484, 3, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Summary:
    """``mean`` and sample standard deviation ``sd`` (n − 1; NaN for one value) of ``n`` values."""

    mean: float
    sd: float
    n: int


@dataclass(frozen=True)
class Difference:
    """``mean`` difference (group − baseline) and its ``level`` interval ``[low, high]``; ``n``: the
    shared seeds when ``paired``, else the smaller group's size."""

    mean: float
    low: float
    high: float
    n: int
    paired: bool


def summarize(values: Sequence[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(math.nan, math.nan, 0)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Summary(mean, sd, n)


def _t(level: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def difference(group: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95) -> Difference:
    """``group`` and ``baseline`` map seed → value (e.g. final held-out REF F1 of that seed's run)."""
    shared = sorted(set(group) & set(baseline))
    if len(shared) >= 2:
        d = summarize([group[s] - baseline[s] for s in shared])
        half = _t(level, d.n - 1) * d.sd / math.sqrt(d.n)
        return Difference(d.mean, d.mean - half, d.mean + half, d.n, True)
    g, b = summarize(list(group.values())), summarize(list(baseline.values()))
    mean = g.mean - b.mean
    if g.n < 2 or b.n < 2:
        return Difference(mean, math.nan, math.nan, min(g.n, b.n), False)
    vg, vb = g.sd**2 / g.n, b.sd**2 / b.n
    se = math.sqrt(vg + vb)
    if se == 0.0:
        return Difference(mean, mean, mean, min(g.n, b.n), False)
    df = (vg + vb) ** 2 / (vg**2 / (g.n - 1) + vb**2 / (b.n - 1))
    half = _t(level, df) * se
    return Difference(mean, mean - half, mean + half, min(g.n, b.n), False)
