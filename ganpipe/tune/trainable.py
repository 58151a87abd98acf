"""The Tune trainable: the same Trainer as `ganpipe trial`, reporting to Tune and MLflow.

A trial resumes from Tune's last checkpoint when it is retried (node lost, error)
or when the sweep is restored, and continues the same MLflow child run.
"""
from __future__ import annotations

import logging
import math
import shutil
import socket
from dataclasses import asdict
from pathlib import Path

import ray
import torch
from ray import tune

from ganpipe import scratch
from ganpipe.config import resolve_trial
from ganpipe.config.schema import SweepConfig
from ganpipe.objective import BEST_OBJECTIVE, OBJECTIVE
from ganpipe.tracking import TrackingFailed, TrialRun
from ganpipe.tune import bench
from ganpipe.tune.sweep_run import SweepRun
from ganpipe.tune.threads import TrialThreads
from ganpipe.train.checkpoint import FILENAME
from ganpipe.train.loop import Trainer
from ganpipe.train.reporter import EvalReport, TrialResult
from ganpipe.viz import save_samples_png


class TrialDiverged(RuntimeError):
    """Raised so Tune marks the trial ERROR and Optuna records it FAIL, never as a score."""


def searched(trainer: Trainer) -> dict[str, float]:
    """What the searcher and ASHA learn from a trial: its best evaluation so far under the sweep's objectives
    (best_fid, best_diversity, ...: the checkpoint promotion would take) and that evaluation's objective."""
    best = trainer.best
    return {BEST_OBJECTIVE: best[OBJECTIVE], **{f"best_{o}": best.get(o, math.nan) for o in trainer.objectives}}


class TuneReporter:
    def __init__(self, run: TrialRun, threads: TrialThreads):
        self.run, self.threads = run, threads

    def on_eval(self, report: EvalReport, trainer: Trainer) -> None:
        folder = scratch.new_folder("ckpt")
        try:
            trainer.save_checkpoint(folder / FILENAME)
            png = None if report.samples is None else save_samples_png(
                report.samples, folder / f"step-{report.step:07d}.png", f"step {report.step}",
                ncol=trainer.grid_columns, modes=trainer.sample_modes)
            metrics = {**report.metrics, "threads": torch.get_num_threads()}  # what this interval trained on
            # with the trial's best objective so far: a curve whose last value the MLflow runs table sorts by
            self.run.log_eval(report.step, {**metrics, BEST_OBJECTIVE: trainer.best[OBJECTIVE]}, png)  # queued
            if png is not None:
                png.unlink()  # the checkpoint folder holds the checkpoint only
            # Tune may stop this actor right after a report (ASHA, last step): give the queue a moment,
            # and all the time it needs after the last evaluation. Metrics are reconciled by the driver.
            self.run.flush(600 if report.step >= trainer.cfg.train.steps else 10)
            tune.report(
                {**metrics, "step": report.step, "mlflow_run_id": self.run.run_id, **searched(trainer)},
                checkpoint=tune.Checkpoint.from_directory(str(folder)),
            )
        finally:  # not reached if this process is killed in between: see ganpipe.scratch
            shutil.rmtree(folder, ignore_errors=True)  # Tune has copied it to the storage path
        self.threads.refresh()  # the next interval trains on this trial's share of idle CPUs, if any

    def on_end(self, result: TrialResult, trainer: Trainer) -> None:
        if result.status == "diverged":
            self.run.mark_diverged(result.message)


def train_trial(params: dict, sweep: SweepConfig, tracking: SweepRun, experiment: str) -> None:
    """params: the values Optuna sampled (dotted keys); tracking: the sweep's run (its parent run);
    experiment: the Tune experiment's name."""
    # one "Checkpoint successfully created" line per evaluation per trial drowns the progress table
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    scratch.remove_orphans()  # the scratch folders of trial processes killed before on this node
    cfg = resolve_trial(sweep, params)
    context = tune.get_context()
    threads = TrialThreads(experiment, context.get_trial_id(), sweep.resources.cpu, sweep.resources.share_idle_cpus)
    device = "cuda" if sweep.resources.gpu > 0 and torch.cuda.is_available() else "cpu"
    where = {
        "ganpipe.node": socket.gethostname(),
        "ganpipe.node_ip": ray.util.get_node_ip_address(),
        "ganpipe.ray_node_id": ray.get_runtime_context().get_node_id(),
    }
    run = bench.NoTracking() if bench.tracking_off() else TrialRun(
        tracking.uri, tracking.experiment_id, tracking.parent_run_id,
        trial_id=context.get_trial_id(), run_name=context.get_trial_name(),
        params=params, config=asdict(cfg), where=where,
    )
    make_trainer, trainer_from_checkpoint = bench.trainer_factories()  # ganpipe.train's, unless benchmarking
    try:  # the run's sender thread ends with the trial, whatever happens (reuse_actors: one actor, many trials)
        if run.diverged_before:  # a retry of a diverged trial would only diverge again
            raise TrialDiverged(run.diverged_before)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                trainer = trainer_from_checkpoint(Path(folder) / FILENAME, device=device,
                                                  objectives=sweep.search.objectives)
            run.log_restart(trainer.step)  # visible in MLflow: where a retried or restored trial picked up
        else:
            trainer = make_trainer(cfg, device=device, objectives=sweep.search.objectives)
        result = trainer.train(TuneReporter(run, threads))
        if not run.flush():  # the last evaluation's metrics and PNG reach MLflow before the trial ends
            raise TrackingFailed(f"MLflow did not take the last evaluation of run {run.run_id} in time")
        if result.status == "diverged":
            raise TrialDiverged(result.message)
    finally:
        run.close()
