"""`ganpipe sweep`: check everything, join Ray, open the sweep's run, fit the Tuner, report, promote.

Order matters: the config is validated, the tracking store checked, Ray joined and the resources checked
before the MLflow experiment and parent run are created, so a bad sweep never leaves a half-started run
behind. The parts live next door: the plan text (plan.py), Ray (ganpipe.cluster), the Tuner (search.py),
the sweep's run and its state file (sweep_run.py), the end-of-sweep report (report.py).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from ray import tune

from ganpipe import cluster, scratch, tracking
from ganpipe.config import ConfigError, Problem, first_values, resolve_trial
from ganpipe.config.schema import SweepConfig
from ganpipe.preflight import check_client_mode, check_data, check_local_resources, parse_storage
from ganpipe.tune import live
from ganpipe.tune.interrupt import TuneInterrupt
from ganpipe.tune.plan import describe_plan
from ganpipe.tune.search import build_tuner, make_trainable
from ganpipe.tune.storage import Location, study_path, upload_study
from ganpipe.tune.sweep_run import (
    SweepRun,
    end_sweep_run,
    latest_experiment_dir,
    new_experiment_dir,
    open_sweep_run,
    read_state,
    retire_unsaved_trials,
    sweep_as_started,
)

EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130}


@dataclass
class SweepOptions:
    address: str | None = None  # None: in-process local Ray sized to this machine
    num_samples: int | None = None
    tracking_uri: str | None = None
    storage: str | None = None  # a folder (default ./ray_results) or s3://bucket/prefix
    resume: bool = False
    dry_run: bool = False
    num_cpus: int | None = None  # local Ray only; default all cores
    experiment: str | None = None  # MLflow experiment; default tracking.experiment or the sweep name
    parent_tags: dict = field(default_factory=dict)  # e.g. nesting under a pipeline's stage
    promote: bool = True  # run the promote: section at the end (a pipeline has its own stage)
    overrides: list[str] = field(default_factory=list)  # the --set that built the sweep; --resume keeps them
    resume_hint: bool = True  # print how to resume an interrupted sweep (a pipeline prints its own)


@dataclass
class SweepOutcome:
    exit_code: int  # 0 done, 1 every trial failed, 130 interrupted (resumable)
    done: bool = False
    run: SweepRun | None = None
    exp_dir: Location | None = None


def run_sweep(sweep: SweepConfig, yaml_text: str, opts: SweepOptions) -> SweepOutcome:
    if opts.num_samples is not None and opts.num_samples < 1:
        raise ConfigError([Problem("--num-samples", "search.num_samples", f"must be >= 1, got {opts.num_samples}")])
    storage = parse_storage(opts.storage)
    exp_dir = None
    if opts.resume:  # first: the checks below must judge the sweep as it was started
        exp_dir = latest_experiment_dir(storage, sweep.name)
        if exp_dir is None or not tune.Tuner.can_restore(exp_dir.uri):
            raise ConfigError([Problem("--resume", "resume", f"no sweep {sweep.name!r} to resume under {storage}")])
        sweep = sweep_as_started(sweep, yaml_text, opts.overrides, opts.num_samples, read_state(exp_dir))
    elif opts.num_samples is not None:
        sweep.search.num_samples = opts.num_samples

    # every check that starts nothing runs before --dry-run answers, so a dry run that passes means a run would start
    uri = tracking.resolve_uri(opts.tracking_uri, sweep.tracking.uri)
    why = tracking.check_reachable(uri)
    if why:
        given_by = tracking.uri_source(opts.tracking_uri, sweep.tracking.uri)
        given_by = {"tracking.uri": sweep.source or "sweep", "default": "default tracking store"}.get(given_by, given_by)
        raise ConfigError([Problem(given_by, "tracking.uri", why)])
    if not opts.address and not cluster.is_connected():
        check_local_resources(sweep, opts.num_cpus)
    target = cluster.resolve_address(opts.address) if opts.address else None
    check_client_mode(target, uri, opts.storage is not None)
    check_data(resolve_trial(sweep, first_values(sweep.space, sweep.trial)), sweep.source or "sweep", keep=False)
    if not sweep.space and sweep.search.num_samples > 1:  # same config, same train.seed: the same trial N times
        print(f"warning: {sweep.source or 'the sweep'} has no search entries, so its {sweep.search.num_samples} "
              "trials train the same config with the same train.seed; add a search entry (e.g. "
              "--set 'optimizer.lr_g={loguniform: [1e-4, 1e-3]}') or --num-samples 1", file=sys.stderr)
    if opts.dry_run:
        print(describe_plan(sweep))
        return SweepOutcome(0)
    exp_dir = exp_dir or new_experiment_dir(storage, sweep.name)

    # Tune's classic output engine, the one that calls a ProgressReporter (ganpipe.tune.live); the new one
    # would drop it for its own per-result lines
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    started_here = cluster.connect_ray(opts.address, opts.num_cpus)
    client = bool(target and cluster.is_ray_client(target))
    try:
        cluster.check_resources(sweep)
        cluster.check_shared_storage(storage, opts.storage is not None, client)
        run = open_sweep_run(sweep, yaml_text, uri, exp_dir, opts.resume, experiment_name(sweep, opts),
                             opts.parent_tags, opts.overrides)
        print(f"sweep {sweep.name}: results in {exp_dir}, MLflow at {uri} (parent run {run.parent_run_id})")
        if opts.resume:
            tuner = tune.Tuner.restore(
                exp_dir.uri, trainable=make_trainable(sweep, run, exp_dir.name),
                resume_unfinished=True, resume_errored=False,
            )
        else:
            tuner = build_tuner(sweep, exp_dir, run, local_ray=started_here)
            # S3: the study the searcher just created goes up at once, so whoever unpickles the searcher
            # elsewhere (the head node under ray://, a later --resume on another machine) finds it
            upload_study(exp_dir)
        start = time.perf_counter()
        try:
            with TuneInterrupt(enabled=not client) as interrupt, live.output_guard():
                results = tuner.fit()
        except BaseException as err:  # never leave the parent RUNNING on a driver error
            end_sweep_run(run, "failed", f"driver error: {err!r}")
            raise
        if client and exp_dir.remote:  # the head kept the study; read its final snapshot, not this empty copy
            study_path(exp_dir).unlink(missing_ok=True)
        hint = resume_command(sweep, run, exp_dir, opts) if opts.resume_hint else ""
        ended = finish_sweep(sweep, results, run, exp_dir, time.perf_counter() - start, interrupt.happened, hint)
        if ended == "finished" and opts.promote and sweep.promote.enabled:
            promote_after_sweep(sweep, run, opts)
        return SweepOutcome(EXIT_CODES[ended], ended != "interrupted", run, exp_dir)
    finally:
        cluster.disconnect(started_here)
        scratch.remove_orphans()  # what killed trial processes left on this node (all of them with in-process Ray)


def experiment_name(sweep: SweepConfig, opts: SweepOptions) -> str:
    return opts.experiment or sweep.tracking.experiment or sweep.name


def resume_command(sweep: SweepConfig, run: SweepRun, exp_dir: Location, opts: SweepOptions) -> str:
    """What the user types to continue: the --set and trials are kept in the sweep's folder; the store,
    storage and cluster must be given again."""
    words = ["ganpipe sweep", sweep.source, "--resume", "--storage", str(exp_dir.parent)]
    if opts.tracking_uri:
        words += ["--tracking-uri", run.uri]
    if opts.address:
        words += ["--address", opts.address]
    return " ".join(words)


def sweep_outcome(trials, num_samples: int, interrupted: bool) -> str:
    """One of EXIT_CODES: finished = every trial of the budget ended; failed = moreover every one errored
    (nothing to rank or promote); interrupted = otherwise, or Tune was (it then hands back the trials it
    stopped as TERMINATED, like finished ones)."""
    done = (not interrupted and len(trials) == num_samples
            and all(t.status in ("TERMINATED", "ERROR") for t in trials))
    if not done:
        return "interrupted"
    return "failed" if all(t.status == "ERROR" for t in trials) else "finished"


def finish_sweep(sweep: SweepConfig, results, run: SweepRun, exp_dir: Location, seconds: float,
                 interrupted: bool = False, resume_hint: str = "") -> str:
    """Report, close the runs as the sweep ended; returns sweep_outcome's word for it."""
    from ganpipe.tune.report import log_sweep_report

    trials = tune.ExperimentAnalysis(exp_dir.uri).trials  # Tune's final snapshot, written as fit() returned
    ended = sweep_outcome(trials, sweep.search.num_samples, interrupted)
    done = ended != "interrupted"
    retired = retire_unsaved_trials(run, {t.trial_id for t in trials})
    summary = log_sweep_report(sweep, results, trials, run, exp_dir, done)
    if retired:
        summary += (f"\ndeleted {retired} child run(s) of trials a killed driver had started after Tune last saved "
                    "its state (Tune never resumed them; restorable in MLflow)")
    upload_study(exp_dir)  # S3: the study's final state beside the results (no-op for a folder)
    why = ""
    if ended == "failed":
        why = f"every trial failed ({len(trials)})" + next(
            (f"; Tune's error file of one: {t.error_file}" for t in trials if t.error_file), "")
        summary += f"\n{why}"
    end_sweep_run(run, ended, why)
    if done:  # the stability report, logged to the parent run; a failure to make it is a note, never the sweep's
        from ganpipe.report import log_report

        summary += "\n" + log_report(run.uri, run.parent_run_id)
    print(summary)
    print(f"\nsweep {ended} in {seconds:.0f} s; Tune results: {exp_dir}")
    print(f"MLflow: {run.uri} (experiment {run.experiment_id}, parent run {run.parent_run_id})")
    print(f"open the UI: ganpipe ui --tracking-uri {run.uri}")
    if not done and resume_hint:
        print(f"resume: {resume_hint}")
    return ended


def promote_after_sweep(sweep: SweepConfig, run: SweepRun, opts: SweepOptions) -> None:
    from ganpipe.promote import PromotionRefused
    from ganpipe.tune.recheck import recheck_and_promote

    print("\npromotion:", flush=True)  # before MLflow's own registry lines, which go to stderr
    try:
        decision = recheck_and_promote(run.uri, sweep.promote, sweep.search.objectives, [run.parent_run_id],
                                       sweep.resources, address=opts.address, num_cpus=opts.num_cpus)
    except PromotionRefused as err:
        print(f"  refused: {err}", flush=True)
        return
    sys.stderr.flush()  # the decision comes last, after "Registered model ... Created version ..."
    lines = [f"  {decision.message}"]
    if decision.outcome in ("champion", "challenger"):
        uri = f"models:/{decision.model_name}@{decision.outcome}"
        lines += [f"  load it: mlflow.pytorch.load_model('{uri}')",
                  f"  sample it: ganpipe sample {uri} -n 64 -o samples.png"
                  + ("" if run.uri == tracking.resolve_uri(None) else f" --tracking-uri {run.uri}")]
    print("\n".join(lines), flush=True)
