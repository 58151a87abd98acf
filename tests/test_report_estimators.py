"""The report's estimators against brute force: expected best of n trials (Lucic et al. 2018) by enumerating
every draw without replacement; the bootstrap interval; the Pareto front; steps to a first hit against
cases worked out by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ganpipe.report.estimators import (
    best_of_n_weights,
    bootstrap_curve,
    expected_best,
    expected_best_curve,
    pareto_front,
    steps_to_first_hit,
)


def brute_force(values, n):
    draws = list(itertools.combinations(range(len(values)), n))
    return sum(min(values[i] for i in d) for d in draws) / len(draws)


@pytest.mark.parametrize("seed", range(5))
def test_expected_best_equals_the_mean_over_every_draw(seed):
    rng = np.random.default_rng(seed)
    values = list(rng.normal(size=int(rng.integers(1, 9))))
    if seed == 0:
        values = [0.3, 0.3, 0.1, 0.7, 0.1]  # ties
    for n in range(1, len(values) + 1):
        assert expected_best(values, n) == pytest.approx(brute_force(values, n), rel=1e-12, abs=1e-12)
    assert expected_best_curve(values) == pytest.approx([brute_force(values, n) for n in range(1, len(values) + 1)])


def test_endpoints_and_monotone():
    values = [5.0, 1.0, 3.0, 2.0]
    curve = expected_best_curve(values)
    assert curve[0] == pytest.approx(np.mean(values)) and curve[-1] == 1.0
    assert all(np.diff(curve) <= 1e-12)
    assert best_of_n_weights(4, 2).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        best_of_n_weights(3, 4)


def test_large_m_does_not_overflow():
    # the best of n of 0, 1, ..., m - 1 drawn without replacement is (m - n) / (n + 1) on average
    m, n = 3000, 1500
    values = np.arange(m) / (m - 1)
    assert expected_best(values, n) == pytest.approx((m - n) / ((n + 1) * (m - 1)), rel=1e-9)


def test_bootstrap_interval_brackets_the_estimate():
    values = list(np.random.default_rng(1).normal(size=12))
    low, high = bootstrap_curve(values, draws=400)
    curve = expected_best_curve(values)
    assert low.shape == high.shape == curve.shape == (12,)
    assert all(low <= high) and all(low <= curve + 1e-9) and high[0] >= curve[0] - 0.5
    assert bootstrap_curve([2.0, 2.0, 2.0])[0] == pytest.approx([2.0, 2.0, 2.0])  # no spread, no interval


def test_pareto_front_by_brute_force():
    rng = np.random.default_rng(3)
    fid, div = rng.uniform(size=20), rng.uniform(size=20)
    fid[4] = np.nan
    expected = {i for i in range(20) if np.isfinite(fid[i]) and not any(
        fid[j] <= fid[i] and div[j] >= div[i] and (fid[j] < fid[i] or div[j] > div[i]) for j in range(20) if j != 4)}
    front = pareto_front(fid, div)
    assert set(front) == expected and list(fid[front]) == sorted(fid[front])


def test_steps_to_first_hit_counts_every_slot_until_the_first_hit():
    # every trial meets the target at its step 300: alone it costs 300 steps, two at a time 600
    assert steps_to_first_hit([300, 300], length=1000, slots=1)["median"] == 300
    both = steps_to_first_hit([300], length=1000, slots=2)
    assert (both["median"], both["low"], both["high"], both["p_within_budget"]) == (600, 600, 600, 1.0)


def test_steps_to_first_hit_follows_the_geometric_law_of_independent_trials():
    # two trials in three meet the target at step 100, the rest run 1,000 steps: the k-th trial is the first
    # to hit with chance (1/3)**(k - 1) * 2/3 and then (k - 1) * 1,000 + 100 steps were spent. Median 100
    # (P(k = 1) = 67 %), 97.5th percentile 3,100 (P(k > 3) = 3.7 % > 2.5 % > P(k > 4) = 1.2 %): both four
    # standard errors of 4,000 draws from the edge
    out = steps_to_first_hit([100, 100, None], length=1000, slots=1, draws=4000)
    assert (out["median"], out["low"], out["high"]) == (100, 100, 3100)


def test_steps_to_first_hit_past_the_budget_is_a_miss():
    out = steps_to_first_hit([None, None, 900], length=1000, slots=1, budget=1500, draws=3000)
    # within 1,500 steps: the first trial hits (1/3: 900 steps); a miss then a hit costs 1,900, too many
    assert abs(out["p_within_budget"] - 1 / 3) < 0.03
    assert out["median"] is None and out["low"] == 900
    assert steps_to_first_hit([None], length=10, budget=100)["p_within_budget"] == 0.0
    with pytest.raises(ValueError, match="never"):
        steps_to_first_hit([None], length=10)
