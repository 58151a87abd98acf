"""What "best" means, in one place: the sweep's objectives as one number per evaluation, lower is better.

That number (`objective`, reported with every evaluation) picks a trial's best checkpoint, orders the
results table, is what ASHA compares and what Tune keeps checkpoints by, ranks the promotion candidates
(their median over seeds after a re-check) and decides whether a new version beats the champion.

    search.objectives   objective of one evaluation
    [mode_tv]           mode_tv: total variation to the ideal mode histogram (ring8 and grid25's default)
    [fid] / [kid]       fid / kid
    [fid, diversity]    diversity first, to the hundredth; fid breaks ties:
                        (1 - floor(100 diversity) / 100) + 0.01 fid / (1 + fid)
    [kid, diversity]    the same with kid

Two objectives are a declared scalarisation, lexicographic: the more diverse generator wins, a lower fid
decides between generators whose diversity agrees to the hundredth (differences below 0.01 are within the
sampling noise of k-NN coverage at 2,000 samples; a mode of ring8 is 0.125). The order always picks a
point of the Pareto front of (fid, diversity), so the searcher's two-objective study and this ranking
agree on what is best; ASHA needs one number per trial, and this is it. Non-finite metrics rank last (inf).
"""
from __future__ import annotations

import math
from typing import Mapping

OBJECTIVE = "objective"  # the number of one evaluation
BEST_OBJECTIVE = "best_objective"  # the trial's best so far (what ASHA compares with scheduler.compare: best)
DIRECTIONS = {"fid": "min", "kid": "min", "mode_tv": "min", "diversity": "max"}  # of each objective metric
TIE_SCALE = 0.01  # the tie-breaker's share: below diversity's resolution (1/100)


def objective(metrics: Mapping[str, float], objectives: list[str]) -> float:
    """One evaluation's metrics -> the number that ranks it (lower is better; inf if not finite)."""
    values = [float(metrics.get(o, math.nan)) for o in objectives]
    if not all(math.isfinite(x) for x in values):
        return math.inf
    if len(objectives) == 1:
        return values[0] if DIRECTIONS[objectives[0]] == "min" else -values[0]
    distance, diversity = values  # [fid or kid, diversity]: validated by config
    hundredths = math.floor(round(100 * min(max(diversity, 0.0), 1.0), 6)) / 100  # round: 0.29 * 100 = 28.99..
    distance = max(distance, 0.0)  # a KID estimate can be slightly negative
    return (1.0 - hundredths) + TIE_SCALE * distance / (1.0 + distance)


def describe(objectives: list[str]) -> str:
    """The rule in words (the plan, the results table's header, a model version's tag)."""
    if len(objectives) == 1:
        return f"{objectives[0]} ({DIRECTIONS[objectives[0]]})"
    return f"{objectives[1]} (max, to the hundredth), then {objectives[0]} (min)"

