"""The report's figures, as PNG files (matplotlib, Agg; the importance plot is Optuna's own). Each function
writes one figure into `out` and returns a Figure (file, caption), or None when there is nothing to draw."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganpipe.objective import OBJECTIVE, describe
from ganpipe.report.data import finite_scores
from ganpipe.report.estimators import bootstrap_curve, expected_best_curve, pareto_front

DPI = 90


@dataclass
class Figure:
    file: Path
    caption: str


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("default")  # Optuna's plots switch to ggplot for the whole process
    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def budget(sweep, method: str | None, out: Path, slug: str) -> Figure | None:
    """Expected best objective vs the number of trials (Lucic et al. 2018), for all trials and per value of
    `method` (a searched choice), with 95% bootstrap bands."""
    groups = {"all trials": finite_scores(sweep.trials)}
    if method:
        for value in sorted({t.params.get(method) for t in sweep.trials if method in t.params}):
            groups[f"{method}={value}"] = finite_scores([t for t in sweep.trials if t.params.get(method) == value])
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in groups.items():
        n = np.arange(1, len(values) + 1)
        low, high = bootstrap_curve(values)
        line, = ax.plot(n, expected_best_curve(values), marker="o", ms=3, label=f"{label} ({len(values)})")
        ax.fill_between(n, low, high, color=line.get_color(), alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set(xlabel="budget: number of trials", ylabel=f"expected best {OBJECTIVE} (lower is better)",
           title=f"{sweep.name}: expected best score vs budget")
    ax.legend(fontsize=8)
    caption = (f"Expected best {OBJECTIVE} ({describe(sweep.objectives)}) of n trials drawn without replacement "
               f"from this sweep's trials, each at its best evaluation; bands: 95% bootstrap intervals.")
    return Figure(_save(fig, out / f"budget-{slug}.png"), caption)


def factor(sweep, entry: dict, coverage_key: str, out: Path, slug: str) -> Figure | None:
    """The objective and mode coverage by the values of one searched entry, at each trial's best (filled)
    and final (hollow) evaluation: box and strip plots for a choice, a scatter for a range."""
    path = entry["path"]
    trials = [t for t in sweep.trials if t.best and path in t.params]
    if not trials:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    choice = entry["kind"] == "choice"
    cats = sorted({t.params[path] for t in trials}) if choice else []
    rng = np.random.default_rng(0)
    for ax, key in zip(axes, (OBJECTIVE, coverage_key)):
        if choice:
            best = [[t.best.get(key, np.nan) for t in trials if t.params[path] == v] for v in cats]
            ax.boxplot([[x for x in b if np.isfinite(x)] or [np.nan] for b in best], widths=0.5,
                       tick_labels=cats, showfliers=False)
            for i, v in enumerate(cats, start=1):
                group = [t for t in trials if t.params[path] == v]
                jitter = rng.uniform(-0.12, 0.12, len(group))
                ax.scatter(i + jitter - 0.15, [t.best.get(key, np.nan) for t in group], s=18, color="C0",
                           label="best" if i == 1 else None)
                ax.scatter(i + jitter + 0.15, [t.final.get(key, np.nan) for t in group], s=18, facecolors="none",
                           edgecolors="C3", label="final" if i == 1 else None)
        else:
            x = [float(t.params[path]) for t in trials]
            ax.scatter(x, [t.best.get(key, np.nan) for t in trials], s=18, color="C0", label="best")
            ax.scatter(x, [t.final.get(key, np.nan) for t in trials], s=18, facecolors="none", edgecolors="C3",
                       label="final")
            if entry.get("log"):
                ax.set_xscale("log")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set(xlabel=path, ylabel=key + (" (lower is better)" if key == OBJECTIVE else ""))
        ax.legend(fontsize=7)
    fig.suptitle(f"{sweep.name}: {path}", fontsize=10)
    caption = (f"{OBJECTIVE} and {coverage_key} by {path} ({len(trials)} trials with an evaluation): filled = "
               "each trial's best evaluation, hollow = its final one" + ("; boxes: best evaluations" if choice else ""))
    return Figure(_save(fig, out / f"factor-{slug}-{path.replace('.', '_')}.png"), caption)


def importance(sweep, out: Path, slug: str) -> tuple[Figure | None, str]:
    """Optuna's fANOVA importance of the searched parameters for the objective; (figure, a note)."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    from ganpipe.objective import objective

    study = sweep.study
    if study is None:
        return None, "parameter importance needs the sweep's Optuna study, which was not found (see notes)"
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    n_params = len(sweep.space)
    note = ""
    if len(done) < max(10, 2 * n_params):
        note = (f"only {len(done)} complete trials for {n_params} searched parameters: the importances below are "
                "mostly noise (fANOVA needs many more trials than parameters)")
    objectives = sweep.objectives
    target = lambda t: objective(dict(zip(objectives, t.values)), objectives)  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = ovm.plot_param_importances(study, target=target, target_name=OBJECTIVE,
                                            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as err:  # noqa: BLE001 - e.g. fewer than 2 complete trials, or no parameter varied
        return None, f"parameter importance not computed: {err}"
    fig = ax.figure
    fig.set_size_inches(7, 3.5)
    return Figure(_save(fig, out / f"importance-{slug}.png"),
                  f"{sweep.name}: fANOVA importance of each searched parameter for the {OBJECTIVE} "
                  "(optuna.importance.FanovaImportanceEvaluator, at each trial's best evaluation)"), note


def pareto(sweeps, out: Path) -> Figure | None:
    """fid x diversity at each trial's best evaluation, the Pareto front, and seed spreads of re-checks."""
    pts = [(s.name, t) for s in sweeps for t in s.trials if "fid" in t.best and "diversity" in t.best]
    if len(pts) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fid = np.array([t.best["fid"] for _, t in pts])
    div = np.array([t.best["diversity"] for _, t in pts])
    for i, name in enumerate(dict.fromkeys(n for n, _ in pts)):
        mask = np.array([n == name for n, _ in pts])
        ax.scatter(fid[mask], div[mask], s=22, color=f"C{i}", label=name)
    front = pareto_front(fid, div)
    ax.plot(fid[front], div[front], "k--", lw=1, label="Pareto front")
    spread = False
    for (_, t), f, d in zip(pts, fid, div):
        r = t.recheck or {}
        if "fid" in r and "diversity" in r:
            # the re-check's median with its range, joined to the trial's own point: a re-check trains fresh
            # seeds, so the trial's (selected, often lucky) value may lie outside that range
            (f_lo, f_med, f_hi), (d_lo, d_med, d_hi) = r["fid"], r["diversity"]
            ax.plot([f, f_med], [d, d_med], ":", color="gray", lw=1)
            ax.errorbar(f_med, d_med, xerr=[[f_med - f_lo], [f_hi - f_med]], yerr=[[d_med - d_lo], [d_hi - d_med]],
                        fmt="o", mfc="none", color="gray", capsize=3, lw=1)
            spread = True
    ax.set(xlabel="fid (lower is better)", ylabel="diversity (higher is better)", title="fid x diversity")
    if np.nanmax(fid) / max(np.nanmin(fid[fid > 0]) if (fid > 0).any() else 1, 1e-9) > 50:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    caption = (f"Each trial at its best evaluation ({len(pts)} trials); dashed: the Pareto front"
               + ("; gray circle with bars, dotted to its trial: the median and range of fid and diversity over a "
                  "seed re-check's fresh seeds (the trial's own, selected seed may lie outside that range)" if spread else
                  "; no seed re-check data with fid and diversity (a pipeline's recheck stage logs them)"))
    return Figure(_save(fig, out / "pareto.png"), caption)


def curves(sweep, top: list, out: Path, slug: str) -> Figure | None:
    """objective, fid and diversity vs step of the top trials."""
    if not top:
        return None
    plt = _plt()
    keys = [k for k in (OBJECTIVE, "fid", "diversity") if any(k in t.curves for t in top)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, t in enumerate(top):
            if key in t.curves:
                steps, values = zip(*t.curves[key])
                ax.plot(steps, values, marker="o", ms=3, color=f"C{i}", label=f"#{i + 1} {t.trial_id}")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set(xlabel="step", ylabel=key, title=key)
    axes[0][0].legend(fontsize=7)
    return Figure(_save(fig, out / f"curves-{slug}.png"),
                  f"{sweep.name}: learning curves of the top {len(top)} trials by best {OBJECTIVE}")
