"""The sweep's run, as one typed record: its MLflow parent run, the state file beside Tune's results that
`--resume` reads, and how the parent run and its children end (orphans of a killed driver included)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import yaml

from ganpipe import tracking
from ganpipe.config import ConfigError, Problem
from ganpipe.preflight import load_checked_sweep
from ganpipe.config.schema import SweepConfig
from ganpipe.tune.plan import describe_plan
from ganpipe.tune.storage import Location

STATE_FILE = "ganpipe-sweep.json"  # parent run id and tracking info, for --resume


@dataclass(frozen=True)
class SweepRun:
    """Where a sweep is tracked: picklable, so trials on any node find their parent run."""

    uri: str  # the tracking store
    experiment_id: str
    parent_run_id: str

    def client(self):
        return tracking.client(self.uri)


# ---- experiment folders ----------------------------------------------------------------
def new_experiment_dir(storage: Location, name: str) -> Location:
    return storage.stamped_folder(name)


def latest_experiment_dir(storage: Location, name: str) -> Location | None:
    candidates = [p for p in storage.stamped(name) if (p / STATE_FILE).exists()]
    return candidates[-1] if candidates else None


def read_state(exp_dir: Location) -> dict:
    return json.loads((exp_dir / STATE_FILE).read_text())


# ---- opening -------------------------------------------------------------------------------
def open_sweep_run(sweep: SweepConfig, yaml_text: str, uri: str, exp_dir: Location, resume: bool,
                   experiment: str, parent_tags: dict, overrides: list[str]) -> SweepRun:
    """Create (or, on --resume, reopen) the experiment and the sweep's parent run."""
    from ganpipe.tune.provenance import sweep_tags

    c = tracking.client(uri)
    if resume:
        state = read_state(exp_dir)
        tracking.reopen(c, state["parent_run_id"])
        return SweepRun(uri, state["experiment_id"], state["parent_run_id"])
    experiment_id = tracking.ensure_experiment(c, experiment, sweep.description)
    tracking.set_trials_view(c, experiment_id, sweep.search.objectives, [p.path for p in sweep.space][:8])
    tags = {**sweep_tags(sweep, yaml_text, exp_dir), **parent_tags}
    parent = tracking.start_parent_run(c, experiment_id, exp_dir.name, tags)
    tracking.log_texts(c, parent, {
        "sweep.yaml": yaml_text,
        "resolved_config.yaml": yaml.safe_dump(asdict(sweep.trial), sort_keys=False),
        "search_space.txt": describe_plan(sweep),
        "sweep_config.json": json.dumps(asdict(sweep), indent=2),  # what ran, --set included
    })
    run = SweepRun(uri, experiment_id, parent)
    exp_dir.mkdir()
    started = {"overrides": list(overrides), "num_samples": sweep.search.num_samples,
               "sweep_sha256": hashlib.sha256(yaml_text.encode()).hexdigest()}  # what --resume keeps
    (exp_dir / STATE_FILE).write_text(json.dumps({**asdict(run), **started}, indent=2))
    return run


def sweep_as_started(sweep: SweepConfig, yaml_text: str, overrides: list[str], num_samples: int | None,
                     state: dict) -> SweepConfig:
    """The sweep a --resume continues: the same file, --set and number of trials as when it started (Tune
    rebuilds the trials from this config, so other values would train the rest of them differently).
    `state` is the sweep's STATE_FILE; sweeps started before it kept these resume with what was given."""
    if "overrides" not in state:
        if num_samples is not None:
            sweep.search.num_samples = num_samples
        return sweep
    started, problems = state["overrides"], []
    if state.get("sweep_sha256") != hashlib.sha256(yaml_text.encode()).hexdigest():
        problems.append(Problem(sweep.source or "sweep", "(file)", "changed since the sweep started; --resume "
                                "continues what was started: restore the file, or start anew without --resume"))
    if overrides and overrides != started:
        problems.append(Problem("--set", "resume", f"--resume keeps the --set the sweep started with "
                                f"({' '.join(started) or 'none'}): give those or none"))
    if num_samples is not None and num_samples != state["num_samples"]:
        problems.append(Problem("--num-samples", "search.num_samples", f"--resume keeps the sweep's "
                                f"{state['num_samples']} trials: give that or none"))
    if problems:
        raise ConfigError(problems)
    sweep = load_checked_sweep(sweep.source, started) if started != overrides else sweep
    sweep.search.num_samples = state["num_samples"]
    return sweep


# ---- ending --------------------------------------------------------------------------------
def end_sweep_run(run: SweepRun, ended: str, why: str = "") -> None:
    """Close the parent run and every child still RUNNING, as the sweep ended: finished, interrupted, or
    failed (`why`: every trial failed, a driver error)."""
    if ended == "failed":
        parent, children, word = ("FAILED", why), ("FAILED", why), "failed"
    elif ended == "finished":
        parent, children, word = ("FINISHED", ""), ("KILLED", "sweep ended"), "finished"
    else:
        parent, children, word = (("KILLED", "interrupted; resume with --resume"),
                                  ("KILLED", "sweep interrupted; resume with --resume"), "killed")
    c = run.client()
    tracking.close_running_children(c, run.experiment_id, run.parent_run_id, *children)
    tracking.end_run(c, run.parent_run_id, *parent, word)


def retire_unsaved_trials(run: SweepRun, known_trial_ids: set[str]) -> int:
    """A driver SIGKILLed between two of Tune's state snapshots leaves child runs of trials that Tune never
    saved: the resumed sweep knows nothing of them (no checkpoint, no result) and its searcher asks anew, while
    their Optuna asks are marked stale. Such a run is ended, tagged why, and deleted (MLflow keeps deleted runs
    restorable: `mlflow runs restore`), so each Tune trial has exactly one child run."""
    c = run.client()
    retired = 0
    for child in tracking.children(c, run.experiment_id, run.parent_run_id):
        trial_id = child.data.tags.get(tracking.TRIAL_TAG)
        if not trial_id or trial_id in known_trial_ids:
            continue
        evals = len(tracking.metric_steps(c, child.info.run_id, "fid"))
        tracking.end_run(c, child.info.run_id, "KILLED", "started by a driver that was killed before Tune saved the "
                         f"trial ({evals} evaluation(s) logged); Tune never resumed it", "killed")
        tracking.delete_run(c, child.info.run_id)
        retired += 1
    return retired
