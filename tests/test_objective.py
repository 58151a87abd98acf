"""The one rule for "best" (ganpipe.objective): what each declared objective ranks first."""
from __future__ import annotations

import math

import pytest

from ganpipe.objective import describe, objective


def test_one_objective_is_its_metric_lower_is_better():
    assert objective({"fid": 0.3, "diversity": 0.1}, ["fid"]) == 0.3
    assert objective({"mode_tv": 0.04}, ["mode_tv"]) == 0.04
    assert objective({"kid": 0.002}, ["kid"]) == 0.002


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_or_missing_metric_ranks_last(bad):
    assert objective({"fid": bad}, ["fid"]) == math.inf
    assert objective({"fid": 0.1, "diversity": bad}, ["fid", "diversity"]) == math.inf
    assert objective({"fid": 0.1}, ["mode_tv"]) == math.inf


def test_two_objectives_rank_diversity_first_then_fid():
    two = ["fid", "diversity"]
    collapsed_sharp = objective({"fid": 0.0146, "diversity": 0.0}, two)  # issue 18: 0 modes, lowest fid
    covering = objective({"fid": 0.09, "diversity": 7 / 8}, two)
    assert covering < collapsed_sharp
    # equal to the hundredth: fid decides, whatever its scale
    assert objective({"fid": 12.0, "diversity": 0.904}, two) < objective({"fid": 30.0, "diversity": 0.909}, two)
    assert objective({"fid": 1e-4, "diversity": 1.0}, two) < objective({"fid": 2e-4, "diversity": 1.0}, two)
    # a hundredth of diversity outweighs any fid
    assert objective({"fid": 1e6, "diversity": 0.91}, two) < objective({"fid": 0.0, "diversity": 0.90}, two)
    assert objective({"fid": 0.1, "diversity": 0.29}, two) == objective({"fid": 0.1, "diversity": 0.2999}, two)


def test_the_lexicographic_order_picks_a_pareto_optimal_evaluation():
    """Among any evaluations, the best under [fid, diversity] is never beaten on both by another one."""
    import random

    rng = random.Random(0)
    two = ["fid", "diversity"]
    for _ in range(200):
        evals = [{"fid": rng.uniform(0, 50), "diversity": rng.choice([i / 8 for i in range(9)])} for _ in range(6)]
        best = min(evals, key=lambda m: objective(m, two))
        assert not any(e["fid"] < best["fid"] and e["diversity"] > best["diversity"] for e in evals)


def test_the_rule_in_words():
    assert describe(["mode_tv"]) == "mode_tv (min)"
    assert describe(["fid", "diversity"]) == "diversity (max, to the hundredth), then fid (min)"
