"""The report's tables, computed from the trials (never hand-written): findings in words, and failure and
collapse rates per factor."""
from __future__ import annotations

import math
import statistics

from ganpipe.objective import OBJECTIVE
from ganpipe.report.data import finite_scores, ranked
from ganpipe.report.estimators import bootstrap_curve, expected_best_curve

MOST_MODES = 0.99  # modes_covered at or above: 990 of stacked-digits' 1000 modes; all of ring8's 8 and grid25's 25
# (a perfect generator shows all 1000 in 96 % of 10,000-sample evaluations, but short runs reach 990-999 and
# seldom all: "all" said 0 of 25 for the CPU study's trials, >= 99 % told its settings apart, 10 of 25)
KEPT = ">= 99 % of modes"


def groups(sweep, entry: dict) -> dict[str, list]:
    """The sweep's trials by the value of a searched entry: each choice, or a range's lower and upper half
    (split at the median of the values tried); trials the entry did not apply to are left out."""
    path = entry["path"]
    trials = [t for t in sweep.trials if path in t.params]
    if entry["kind"] == "choice":
        return {f"{path}={v}": [t for t in trials if t.params[path] == v]
                for v in sorted({t.params[path] for t in trials})}
    values = [float(t.params[path]) for t in trials]
    if not values:
        return {}
    mid = statistics.median(values)
    low = [t for t in trials if float(t.params[path]) <= mid]
    high = [t for t in trials if float(t.params[path]) > mid]
    return {k: v for k, v in ((f"{path} <= {mid:.3g}", low), (f"{path} > {mid:.3g}", high)) if v}


def collapsed(t, min_diversity: float) -> bool:
    """The trial's best evaluation is below the gate's diversity (or it never evaluated)."""
    return not t.best or not t.best.get("diversity", -math.inf) >= min_diversity


def most_modes(t, coverage_key: str) -> bool:
    return coverage_key == "modes_covered" and t.best.get("modes_covered", 0.0) >= MOST_MODES


def rate_rows(sweep, coverage_key: str) -> list[dict]:
    """Failure and collapse counts per factor value (every searched entry)."""
    rows = []
    for entry in sweep.space:
        for label, trials in groups(sweep, entry).items():
            n = len(trials)
            row = {"factor": label, "trials": n,
                   "failed (diverged or errored)": _frac(sum(t.failed for t in trials), n),
                   f"best diversity < {sweep.min_diversity:g} (promote.min_diversity)":
                       _frac(sum(collapsed(t, sweep.min_diversity) for t in trials), n)}
            if coverage_key == "modes_covered":
                row[f"covered {KEPT} at best"] = _frac(sum(most_modes(t, coverage_key) for t in trials), n)
            scores = finite_scores(trials)
            row[f"median best {OBJECTIVE}"] = f"{statistics.median(scores):.4g}" if scores else "-"
            rows.append(row)
    return rows


def shown(value: str) -> str:
    """A param as MLflow keeps it (a string), numbers to 4 significant digits."""
    try:
        return f"{float(value):.4g}" if any(ch in value for ch in ".e") else value
    except ValueError:
        return value


def _frac(k: int, n: int) -> str:
    return f"{k}/{n}"


def findings(sweep, coverage_key: str) -> list[str]:
    """Sentences computed from the trials: per choice, how many kept the modes and how many failed; the best
    trial; the expected best at half the budget and at all of it."""
    lines = []
    n = len(sweep.trials)
    evaluated = [t for t in sweep.trials if t.best]
    failed = sum(t.failed for t in sweep.trials)
    lines.append(f"{n} trials: {len(evaluated)} evaluated at least once, {failed} failed (diverged or errored)")
    for entry in sweep.space:
        if entry["kind"] != "choice":
            continue
        parts = []
        for label, trials in groups(sweep, entry).items():
            value = label.split("=", 1)[1]
            if coverage_key == "modes_covered":
                kept = sum(most_modes(t, coverage_key) for t in trials)
                parts.append(f"{value}: {kept}/{len(trials)} covered {KEPT}")
            else:
                kept = sum(not collapsed(t, sweep.min_diversity) for t in trials)
                parts.append(f"{value}: {kept}/{len(trials)} reached diversity >= {sweep.min_diversity:g}")
            bad = sum(t.failed for t in trials)
            if bad:
                parts[-1] += f" ({bad} failed)"
        if parts:
            lines.append(f"{entry['path']} at each trial's best: " + "; ".join(parts))
    if evaluated:
        best = ranked(evaluated)[0]
        setting = ", ".join(f"{e['path']}={shown(best.params[e['path']])}" for e in sweep.space if e["path"] in best.params)
        extra = ", ".join(f"{k} {best.best[k]:.4g}" for k in ("fid", "diversity", "mode_tv") if k in best.best)
        lines.append(f"best trial {best.trial_id}: {OBJECTIVE} {best.score:.4g} at step {best.best.get('step')}"
                     f" ({extra}) with {setting or 'no searched values'}")
    scores = finite_scores(evaluated)
    if len(scores) >= 2:
        curve, (low, high) = expected_best_curve(scores), bootstrap_curve(scores)
        half = max(1, len(scores) // 2)
        lines.append(f"expected best {OBJECTIVE} of {half} trials: {curve[half - 1]:.4g} "
                     f"[{low[half - 1]:.4g}, {high[half - 1]:.4g}]; of all {len(scores)}: {curve[-1]:.4g}")
    return lines
