"""Seed aggregation of `diadem-ray compare` against values computed by hand (t quantiles from tables:
t(0.975, 2) = 4.302653, t(0.975, 3) = 3.182446)."""

from __future__ import annotations

import math

import pytest

from diadem_ray.compare_stats import difference, summarize


def test_summary_is_mean_sample_sd_and_count():
    s = summarize([10.0, 12.0, 14.0])
    assert (s.mean, s.sd, s.n) == (12.0, 2.0, 3)
    one = summarize([5.0])
    assert one.mean == 5.0 and math.isnan(one.sd) and one.n == 1
    assert summarize([]).n == 0


def test_paired_by_seed_when_the_groups_share_seeds():
    # per-seed differences 3, 2, 4: mean 3, sd 1, n 3 -> 3 ± 4.302653 / sqrt(3) = 3 ± 2.484138
    d = difference({0: 13.0, 1: 14.0, 2: 18.0, 7: 50.0}, {0: 10.0, 1: 12.0, 2: 14.0})
    assert d.paired and d.n == 3 and d.mean == pytest.approx(3.0)
    assert (d.low, d.high) == pytest.approx((0.515862, 5.484138), abs=1e-5)


def test_welch_when_the_groups_share_no_seeds():
    # group 12, 14, 16, 18 (mean 15, var 20/3); baseline 10, 12, 14 (mean 12, var 4)
    # se^2 = (20/3)/4 + 4/3 = 3; df = 9 / ((5/3)^2/3 + (4/3)^2/2) = 9 / (25/27 + 24/27) = 243/49 = 4.959
    d = difference({10: 12.0, 11: 14.0, 12: 16.0, 13: 18.0}, {0: 10.0, 1: 12.0, 2: 14.0})
    from scipy.stats import t

    half = t.ppf(0.975, 243 / 49) * math.sqrt(3.0)
    assert not d.paired and d.mean == pytest.approx(3.0) and d.n == 3
    assert (d.low, d.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert half == pytest.approx(4.4634, abs=1e-3)  # t(0.975, 4.959) = 2.5770


def test_no_interval_from_a_single_run():
    d = difference({0: 20.0}, {1: 10.0, 2: 12.0})
    assert d.mean == pytest.approx(9.0) and math.isnan(d.low) and math.isnan(d.high) and not d.paired
