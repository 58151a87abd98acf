"""End of a sweep: the ranked results table and Optuna plots, logged to the parent run."""
from __future__ import annotations

import math
import warnings
import tempfile
from pathlib import Path

import optuna

from ganpipe import tracking
from ganpipe.config.schema import SweepConfig
from ganpipe.metrics.names import SUMMARY, is_evaluation_metric, is_reported
from ganpipe.objective import BEST_OBJECTIVE, OBJECTIVE, describe
from ganpipe.tune.sweep_run import SweepRun

SHOWN_METRICS = ("step", OBJECTIVE, *SUMMARY)


def results_table(sweep: SweepConfig, results, trials) -> list[dict]:
    """One row per trial at its best evaluation under the sweep's objectives (the lowest `objective`, the
    evaluation its best checkpoint holds), best first; failed trials last.
    trials: Tune's Trial objects (tune.ExperimentAnalysis(...).trials)."""
    # a Result names its trial only by path (ResultGrid builds it with path=trial.path)
    by_path = {t.path: t for t in trials}
    rows = []
    for result in results:
        df = result.metrics_dataframe
        config = result.config or {}
        trial = by_path.get(result.path)
        row = {"trial_id": trial.trial_id if trial else None, "status": None,
               **{p.path: config.get(p.path, "") for p in sweep.space}}
        if df is not None and OBJECTIVE in df and df[OBJECTIVE].notna().any():
            best = df.loc[df[OBJECTIVE].idxmin()]  # the first of equals: the earliest, as the trainer keeps
            row.update({k: best[k] for k in SHOWN_METRICS if k in best})
            row["mlflow_run_id"] = best.get("mlflow_run_id", "")
        row["status"] = "ERROR" if result.error else trial.status if trial else "TERMINATED"
        if result.error:
            row["error"] = str(result.error).strip().splitlines()[-1][:200]
        rows.append(row)
    rows.sort(key=lambda r: (r["status"] == "ERROR", r.get(OBJECTIVE, math.inf)))
    return rows


def to_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no trials)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| rank | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {i + 1} | " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for i, r in enumerate(rows)]
    return "\n".join(lines)


SCREEN_WIDTH = 120
RUN_ID_CHARS = 8  # on screen; results.csv and results.md keep the full ids


def to_screen(rows: list[dict], width: int = SCREEN_WIDTH) -> str:
    """The ranked table for a terminal: at most `width` columns wide, run ids shortened, parameters named by
    their last part (lr_g for optimizer.lr_g); the columns that do not fit are left out, last first, and named."""
    if not rows:
        return "(no trials)"
    cols = list(dict.fromkeys(k for r in rows for k in r if k != "error"))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [{c: fmt(r.get(c, ""))[:RUN_ID_CHARS] if c == "mlflow_run_id" else fmt(r.get(c, "")) for c in cols}
             for r in rows]
    head = {c: "run" if c == "mlflow_run_id" else c.partition(".")[0] if c.endswith(".name") else c.rpartition(".")[2]
            for c in cols}
    first = ("trial_id", "status", "step", OBJECTIVE, "mlflow_run_id", "mode_tv", "fid", "kid", "diversity", "modes")
    order = ([c for c in first if c in cols] + [c for c in cols if "." in c]  # then the searched parameters
             + [c for c in cols if c not in first and "." not in c])  # then the other metrics

    def line(values: list[str], sizes: list[int]) -> str:
        return "  ".join(v.ljust(n) for v, n in zip(values, sizes)).rstrip()

    shown = list(cols)  # shown in the table's own order; `order` says which go first when space runs out
    while True:
        sizes = [len(str(len(rows)))] + [max(len(head[c]), *(len(x[c]) for x in cells)) for c in shown]
        if sum(sizes) + 2 * len(shown) <= width or len(shown) <= 3:
            break
        shown.remove(order.pop())
    lines = [line(["#", *(head[c] for c in shown)], sizes)]
    lines += [line([str(i + 1), *(x[c] for c in shown)], sizes) for i, x in enumerate(cells)]
    left = [c for c in cols if c not in shown]
    if left:
        lines.append(f"(also in results.csv: {', '.join(left)})")
    return "\n".join(lines)


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def fail_stale_optuna_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int:
    """After a killed driver the study can keep RUNNING trials that were asked but never ran
    (the resumed searcher did not know them); mark them FAIL and say why (`storage`: the study's own)."""
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "ganpipe_stale", "asked by a sweep driver that was killed; never ran")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(stale)


def optuna_plots(study: optuna.Study, objectives: list[str], folder: Path) -> tuple[list[Path], list[str]]:
    """PNG plots (matplotlib backend); returns (files, why some were skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    target = (lambda t: t.values[0]) if len(objectives) > 1 else None
    name = f"best {objectives[0]}"  # the study holds each trial's best evaluation (ganpipe.tune.search)
    plots = {
        "optuna_history.png": lambda: ovm.plot_optimization_history(study, target=target, target_name=name),
        "optuna_importance.png": lambda: ovm.plot_param_importances(study, target=target, target_name=name),
    }
    if len(objectives) > 1:
        plots["optuna_pareto_front.png"] = lambda: ovm.plot_pareto_front(study, target_names=list(objectives))
    files, skipped = [], []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # "experimental" and small-sample notes from optuna
                warnings.simplefilter("ignore")
                ax = plot()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
            files.append(folder / name)
        except Exception as err:  # e.g. importance needs >= 2 complete trials with varied params
            skipped.append(f"{name}: {err}")
    return files, skipped


def reconcile_metrics(results, run: SweepRun) -> int:
    """Log every evaluation Tune received that MLflow lacks (a trial killed with metrics still queued,
    a tracking server that was down); returns how many evaluations were added."""
    c = run.client()
    added = 0
    for result in results:
        df = result.metrics_dataframe
        if df is None or "mlflow_run_id" not in df or "fid" not in df:
            continue
        run_ids = df["mlflow_run_id"].dropna()
        if run_ids.empty:
            continue
        run_id = run_ids.iloc[0]
        have = set(tracking.metric_steps(c, run_id, "fid"))
        for _, row in df.drop_duplicates("step").iterrows():
            if int(row["step"]) in have:
                continue
            metrics = {k: float(row[k]) for k in row.index
                       if (is_reported(k) or k == BEST_OBJECTIVE) and row[k] == row[k]}
            tracking.log_metrics(c, run_id, metrics, int(row["step"]))
            added += 1
    return added


def attach_best_checkpoints(results, run: SweepRun) -> int:
    """Copy each finished trial's best checkpoint (Tune keeps the top-k by the objective) into its MLflow run."""
    from ganpipe.train.checkpoint import FILENAME

    c = run.client()
    attached = 0
    for result in results:
        if result.error or not result.best_checkpoints:
            continue  # a failed or diverged trial is never a promotion candidate
        # the earliest of equals, as the trainer's own best
        checkpoint, metrics = min(result.best_checkpoints,
                                  key=lambda cm: (cm[1].get(OBJECTIVE, math.inf), cm[1].get("step", 0)))
        run_id = metrics.get("mlflow_run_id")
        attached_step = tracking.best_values(tracking.get_run(c, run_id)).get("step") if run_id else None
        if not run_id or attached_step == metrics.get("step"):
            continue  # already attached (e.g. before a --resume that found nothing better)
        # else a first time, or a resumed trial that improved: the new best replaces the old (its
        # ganpipe.best.* tags are overwritten)
        best = {k: metrics[k] for k in metrics
                if isinstance(metrics.get(k), (int, float)) and (k in ("step", OBJECTIVE) or is_evaluation_metric(k))}
        with checkpoint.as_directory() as folder:
            tracking.log_best_checkpoint(c, run_id, Path(folder) / FILENAME, best)
        attached += 1
    return attached


def log_sweep_report(sweep: SweepConfig, results, trials, run: SweepRun, exp_dir, done: bool) -> str:
    """exp_dir: the experiment's ganpipe.tune.storage.Location (a folder or an S3 prefix); trials: Tune's."""
    from ganpipe.tune.storage import StudyStorage

    rows = results_table(sweep, results, trials)
    notes = []
    added = reconcile_metrics(results, run)
    if added:
        notes.append(f"logged {added} evaluation(s) to MLflow that trials could not send themselves")
    attach_best_checkpoints(results, run)
    c = run.client()
    tracking.log_texts(c, run.parent_run_id, {"results.md": to_markdown(rows) + "\n", "results.csv": to_csv(rows)})
    storage = StudyStorage(exp_dir.uri)
    study = optuna.load_study(study_name=exp_dir.name, storage=storage)
    if done:
        n = fail_stale_optuna_trials(study, storage)
        if n:
            notes.append(f"marked {n} stale RUNNING Optuna trial(s) FAIL")
    with tempfile.TemporaryDirectory() as tmp:
        files, skipped = optuna_plots(study, sweep.search.objectives, Path(tmp))
        tracking.log_files(c, run.parent_run_id, files)
    notes += [f"plot skipped: {s}" for s in skipped]
    finished = [r for r in rows if r["status"] != "ERROR" and OBJECTIVE in r]
    if finished:
        best = finished[0]
        tracking.log_metrics(c, run.parent_run_id, {f"best_{k}": float(best[k]) for k in SHOWN_METRICS if k in best})
    failed = sum(r["status"] == "ERROR" for r in rows)
    unreported = len(rows) - len(finished) - failed
    counts = [f"{len(finished)} with results", f"{failed} failed"] + (
        [f"{unreported} stopped before their first evaluation"] if unreported else [])
    header = f"ranked trials by {describe(sweep.search.objectives)} at each one's best evaluation ({', '.join(counts)}):"
    return "\n".join([header, to_screen(rows[:10])] + notes)
