"""The report's numbers, pure numpy: expected best score vs budget (Lucic et al. 2018), its bootstrap
interval, and the Pareto front of (fid, diversity).

Expected best of a budget of n trials (Lucic et al., "Are GANs Created Equal?", 2018): of the m trials a
sweep ran, draw n without replacement; the expected best of the n. Sorted from best to worst
(v_1 <= ... <= v_m, lower is better), v_i is the best of a draw exactly when it is drawn and the other n - 1
come from the m - i worse ones, so

    E[best of n] = sum_i v_i * C(m - i, n - 1) / C(m, n).

The interval resamples the m trials with replacement (bootstrap) and takes percentiles of that estimate.
"""
from __future__ import annotations

import math

import numpy as np


def best_of_n_weights(m: int, n: int) -> np.ndarray:
    """P(the i-th best of m is the best of n drawn without replacement), i = 1..m; sums to 1."""
    if not 1 <= n <= m:
        raise ValueError(f"n must be in 1..{m}, got {n}")
    # in logs: C(m - i, n - 1) / C(m, n) overflows floats for m in the thousands
    i = np.arange(1, m + 1)
    valid = (m - i) >= (n - 1)
    out = np.zeros(m)
    k = i[valid]
    log_num = _log_comb(m - k, n - 1)
    out[valid] = np.exp(log_num - _log_comb(np.array([m]), n)[0])
    return out / out.sum()  # exact up to rounding


def _log_comb(a: np.ndarray, b: int) -> np.ndarray:
    lg = np.vectorize(math.lgamma)
    a = np.asarray(a, dtype=float)
    return lg(a + 1) - lg(b + 1) - lg(a - b + 1)


def expected_best(values, n: int) -> float:
    """Expected lowest of n of `values` drawn without replacement (lower is better)."""
    v = np.sort(np.asarray(values, dtype=float))
    return float(np.dot(best_of_n_weights(len(v), n), v))


def expected_best_curve(values) -> np.ndarray:
    """expected_best(values, n) for n = 1..m."""
    v = np.sort(np.asarray(values, dtype=float))
    return np.array([float(np.dot(best_of_n_weights(len(v), n), v)) for n in range(1, len(v) + 1)])


def bootstrap_curve(values, draws: int = 500, level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval of expected_best_curve over `draws` bootstrap resamples of the trials."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    m = len(v)
    weights = np.stack([best_of_n_weights(m, n) for n in range(1, m + 1)])  # (n, i)
    samples = np.sort(v[rng.integers(0, m, size=(draws, m))], axis=1)  # (draws, i)
    curves = samples @ weights.T  # (draws, n)
    tail = (1 - level) / 2 * 100
    return np.percentile(curves, tail, axis=0), np.percentile(curves, 100 - tail, axis=0)


def pareto_front(fid, diversity) -> np.ndarray:
    """Indices of the points no other point beats on both lower fid and higher diversity (ties kept),
    in order of increasing fid."""
    f, d = np.asarray(fid, dtype=float), np.asarray(diversity, dtype=float)
    ok = np.isfinite(f) & np.isfinite(d)
    keep = []
    for i in np.flatnonzero(ok):
        dominated = ok & (f <= f[i]) & (d >= d[i]) & ((f < f[i]) | (d > d[i]))
        if not dominated.any():
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: (f[i], -d[i])), dtype=int)



def steps_to_first_hit(hit_steps, length: int, slots: int = 1, budget: int | None = None,
                       draws: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Training steps a search of independent trials spends before its first trial meets a target, from
    trials already run (random search's): each resample draws trials with replacement and runs them
    `slots` at a time, all at one step rate; a trial that met the target at its own step h is done there,
    one that never did (None) runs `length` steps. Steps spent = what every started trial trained until
    the first hit. One search's steps to the target is one draw of this; the median and interval say how
    lucky that draw was. A resample that spends more than `budget` first is a miss (p_within_budget)."""
    hits = list(hit_steps)
    if not hits:
        raise ValueError("no trials to resample")
    rng = np.random.default_rng(seed)
    cap = math.inf if budget is None else budget
    if cap == math.inf and all(h is None for h in hits):
        raise ValueError("no trial met the target and there is no budget: the search would never end")
    spent_all = []
    for _ in range(draws):
        clocks, started, first = [0] * slots, [], math.inf  # started: (start, steps it trains)

        def spent(t):  # steps trained by all started trials up to time t (one step rate: time in steps)
            return sum(min(run, max(0, t - start)) for start, run in started)

        while True:
            slot = min(range(slots), key=clocks.__getitem__)
            start = clocks[slot]
            if start >= first or spent(start) >= cap:  # nothing started from here on comes first
                break
            h = hits[rng.integers(len(hits))]
            started.append((start, length if h is None else h))
            clocks[slot] = start + started[-1][1]
            if h is not None:
                first = min(first, start + h)
        total = spent(first) if first < math.inf else math.inf
        spent_all.append(total if total <= cap else math.inf)
    values = np.array(spent_all)
    tail = (1 - level) / 2 * 100

    def pct(q):  # a percentile among the misses is "never" (None)
        v = np.percentile(values, q, method="lower")
        return int(v) if math.isfinite(v) else None

    return {"median": pct(50), "low": pct(tail), "high": pct(100 - tail),
            "p_within_budget": round(float(np.isfinite(values).mean()), 4), "draws": draws, "slots": slots}
