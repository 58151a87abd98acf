"""What the report is built from, read from MLflow (and the sweep's Optuna study when its folder is at hand):
the sweep's parent run (or a pipeline's, with a sweep per stage), each trial's metric histories, params and
status, seed re-check data, and the sample image of the trials shown.

Best follows ganpipe.objective: a trial's best evaluation is its lowest `objective` (the earliest of equals).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganpipe import tracking
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.objective import OBJECTIVE

TARGET = "EXPERIMENT_OR_PARENT_RUN"  # how bad input names the command's argument
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
READ = (OBJECTIVE, "fid", "kid", "diversity", "modes_covered", "coverage", "mode_tv")  # histories read
FAILED = ("diverged", "failed")  # ganpipe.status of a trial that failed


@dataclass
class Trial:
    run_id: str
    trial_id: str
    status: str  # ganpipe.status: finished, early-stopped, diverged, failed, killed
    params: dict  # searched values by path, as MLflow keeps them (strings)
    curves: dict = field(default_factory=dict)  # metric -> [(step, value)]
    best: dict = field(default_factory=dict)  # metrics at the best evaluation ({} if it never evaluated)
    final: dict = field(default_factory=dict)  # metrics at the last evaluation
    recheck: dict | None = None  # {"seeds", "min", "max"[, "fid", "diversity": (low, high)]} of a seed re-check
    sample: Path | None = None  # its last sample image, for the trials shown

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def score(self) -> float:
        return self.best.get(OBJECTIVE, math.inf)


def ranked(trials) -> list[Trial]:
    """The trials that evaluated at least once, best first: lowest best objective, then the earliest best step."""
    return sorted((t for t in trials if t.best), key=lambda t: (t.score, t.best["step"]))


def finite_scores(trials) -> list[float]:
    """The best objective of every trial that reached a finite one (what the expected-best estimators take)."""
    return [t.score for t in trials if math.isfinite(t.score)]


@dataclass
class Sweep:
    name: str  # the stage's name in a pipeline, else the parent run's name
    run_id: str
    objectives: list
    space: list  # the searched entries of sweep_config.json: {"path", "kind", "choices", "low", "high", "log"}
    min_diversity: float
    trials: list
    study: object = None  # optuna.Study, or None (then why in `notes`)
    notes: list = field(default_factory=list)


@dataclass
class ReportData:
    title: str
    run_id: str
    experiment: str
    uri: str
    sweeps: list
    coverage_key: str  # modes_covered (points, images with classes), coverage, or diversity
    notes: list = field(default_factory=list)


def find_target(c, target: str):
    """The sweep or pipeline parent run that `target` (an experiment name or a parent run id) names; an
    experiment gives its latest pipeline run, else its latest sweep run. ConfigError naming TARGET."""
    from ganpipe.promote import find_parent

    if RUN_ID.match(target) and (run := tracking.find_run(c, target)) is not None:
        if run.data.tags.get(tracking.TRIAL_TAG) or run.data.tags.get("ganpipe.kind") not in ("sweep", "pipeline"):
            raise ConfigError([Problem(TARGET, "run", f"run {target} is no sweep's or pipeline's parent run "
                                       f"(ganpipe.kind {run.data.tags.get('ganpipe.kind', 'missing')}); give "
                                       "the run `ganpipe sweep` or `ganpipe run` started, or its experiment")])
        return run
    exp = tracking.find_experiment(c, target)
    if exp is not None and (pipeline := tracking.latest_run(c, exp.experiment_id, "pipeline")) is not None:
        return pipeline
    try:
        return find_parent(c, target, None)[1]
    except ConfigError as err:  # the same words, naming this command's argument
        raise ConfigError([Problem(TARGET, p.key, p.message.replace("no MLflow experiment named",
                                   "no MLflow run id or experiment named")) for p in err.problems]) from None


def gather(uri: str, parent, out: Path, top_k: int = 3) -> ReportData:
    """Everything the page shows, for the parent run `parent` (a sweep's or a pipeline's); the sample
    images of the top_k trials of each sweep are downloaded into `out`."""
    c = tracking.client(uri)
    info, tags = parent.info, parent.data.tags
    notes = []
    if tags.get("ganpipe.kind") == "pipeline":
        stages = sorted(tracking.children(c, info.experiment_id, info.run_id), key=lambda r: r.info.start_time)
        sweep_runs = [r for r in stages if r.data.tags.get("ganpipe.kind") == "sweep"]
        recheck = _pipeline_recheck(c, [r for r in stages if r.data.tags.get("ganpipe.kind") == "recheck"])
    else:
        sweep_runs, recheck = [parent], {}
    sweeps = [_sweep(c, run, recheck, notes) for run in sweep_runs]
    keys = {k for s in sweeps for t in s.trials for k in t.best}
    coverage_key = next((k for k in ("modes_covered", "coverage", "diversity") if k in keys), "diversity")
    for k, s in enumerate(sweeps, start=1):
        for i, t in enumerate(ranked(s.trials)[:top_k]):
            t.sample = _last_sample(c, t, out, f"sample-{k}-{i + 1}.png")
    title = f"{tracking.experiment_name(c, info.experiment_id)} / {info.run_name}"
    return ReportData(title, info.run_id, tracking.experiment_name(c, info.experiment_id), uri, sweeps,
                      coverage_key, notes)


def _sweep(c, run, recheck: dict, notes: list) -> Sweep:
    name = run.data.tags.get("ganpipe.stage") or run.info.run_name
    with tempfile.TemporaryDirectory() as tmp:
        text = tracking.read_text_artifact(c, run.info.run_id, "sweep_config.json", Path(tmp))
    if text is None:
        raise ConfigError([Problem(TARGET, "run", f"run {run.info.run_id} has no sweep_config.json: no sweep's "
                                   "parent run")])
    config = json.loads(text)
    objectives = config["search"]["objectives"]
    trials = [_trial(c, child) for child in tracking.children(c, run.info.experiment_id, run.info.run_id)]
    spreads = {}  # a sweep's own re-check (the winner's, on its model version); a pipeline's recheck stage wins
    for version in tracking.versions_from_parent(c, run.info.run_id):
        vt = version.tags
        if "ganpipe.rank_spread" in vt:
            low, high = json.loads(vt["ganpipe.rank_spread"])
            spreads[vt.get("ganpipe.run_id")] = {"seeds": int(vt.get("ganpipe.rank_seeds", 0)), "min": low, "max": high}
    spreads.update(recheck)
    for t in trials:
        t.recheck = spreads.get(t.run_id)
    sweep = Sweep(name, run.info.run_id, objectives, config["space"], config["promote"]["min_diversity"], trials)
    sweep.study = _study(run, sweep.notes)
    return sweep


def _trial(c, run) -> Trial:
    tags = run.data.tags
    t = Trial(run.info.run_id, tags.get(tracking.TRIAL_TAG, run.info.run_name),
              tags.get(tracking.STATUS_TAG, run.info.status.lower()), dict(run.data.params))
    t.curves = {k: tracking.metric_history(c, run.info.run_id, k) for k in READ if k in run.data.metrics}
    steps = [s for s, _ in t.curves.get(OBJECTIVE, [])]
    if steps:
        at = {k: dict(v) for k, v in t.curves.items()}
        values = [(at[OBJECTIVE][s] if math.isfinite(at[OBJECTIVE][s]) else math.inf, s) for s in steps]
        best_step = min(values)[1]  # lowest objective, the earliest of equals
        t.best = {"step": best_step, **{k: v[best_step] for k, v in at.items() if best_step in v}}
        t.final = {"step": steps[-1], **{k: v[steps[-1]] for k, v in at.items() if steps[-1] in v}}
    return t


def _pipeline_recheck(c, runs: list) -> dict:
    """{child run id: seed spread} from the recheck.json of a pipeline's recheck stages."""
    found = {}
    for run in runs:
        with tempfile.TemporaryDirectory() as tmp:
            text = tracking.read_text_artifact(c, run.info.run_id, "recheck.json", Path(tmp))
        for entry in json.loads(text or "{}").values():
            seeds = [r["metrics"] for r in entry.get("runs", []) if r.get("status") == "finished"]
            spread = {"seeds": entry["seeds"], "min": entry["min"], "max": entry["max"]}
            for key in ("fid", "diversity"):
                values = [m[key] for m in seeds if key in m]
                if values:
                    spread[key] = (min(values), float(np.median(values)), max(values))
            found[entry["run_id"]] = spread
    return found


def _last_sample(c, t: Trial, out: Path, name: str) -> Path | None:
    pngs = sorted(p for p in tracking.artifact_paths(c, t.run_id, "samples") if p.endswith(".png"))
    if not pngs:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        got = tracking.download_artifact(c, t.run_id, pngs[-1], Path(tmp))
        if got is None:
            return None
        target = out / name
        target.write_bytes(got.read_bytes())
    return target


def _study(run, notes: list):
    """The sweep's Optuna study from its folder (tag ganpipe.experiment_dir), or None and why in `notes`."""
    import optuna

    from ganpipe.tune.storage import Location, fetch_study

    folder = run.data.tags.get("ganpipe.experiment_dir")
    if not folder:
        notes.append("no Optuna study: the parent run names no sweep folder (tag ganpipe.experiment_dir)")
        return None
    try:
        loc = Location(folder)
        path = fetch_study(loc)
        if not path.exists():
            notes.append(f"no Optuna study at {folder} (moved or deleted?): the page is built from MLflow alone")
            return None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=loc.name, storage=f"sqlite:///{path}")
    except Exception as err:  # noqa: BLE001 - the page is still made from MLflow
        notes.append(f"Optuna study of {folder} unreadable ({type(err).__name__}: {err}): built from MLflow alone")
        return None
