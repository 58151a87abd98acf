"""Benchmark-only hooks of the trainable (benchmarks/tracking_scale.py and its test), off unless a private
environment variable is set in the trial's process (a local Ray's workers inherit the driver's environment):

    GANPIPE_BENCH_NO_TRAIN=1     the trial trains nothing: NoTrainTrainer reports as often, with the same metric
                                 keys, objective and best-so-far rules as the real Trainer, as fast as it can
    GANPIPE_BENCH_NO_TRACKING=1  the trial logs nothing to MLflow (NoTracking): the same Tune run, tracking off

Everything else of a trial runs as in a sweep: Tune's report with a checkpoint at every evaluation, the
trial's MLflow child run and its background sender, the driver's searcher, scheduler and callbacks. No sample
PNG is drawn (the double has no samples), so the figures measure metrics and checkpoints, not matplotlib.
Not part of the sweep schema: a sweep file cannot turn them on.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ganpipe.objective import OBJECTIVE, objective
from ganpipe.train.checkpoint import checkpoint_file
from ganpipe.train.reporter import EvalReport, NullReporter, TrialResult

NO_TRAIN = "GANPIPE_BENCH_NO_TRAIN"
NO_TRACKING = "GANPIPE_BENCH_NO_TRACKING"


def _on(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def trainer_factories():
    """(make_trainer, trainer_from_checkpoint): ganpipe.train's, or the no-train double's under NO_TRAIN."""
    if _on(NO_TRAIN):
        return NoTrainTrainer, NoTrainTrainer.from_checkpoint
    from ganpipe.train import make_trainer, trainer_from_checkpoint

    return make_trainer, trainer_from_checkpoint


def tracking_off() -> bool:
    return _on(NO_TRACKING)


# ---- a trainer that trains nothing --------------------------------------------------------------
_KEYS: dict[str, dict[str, float]] = {}  # data config -> the protocol's metrics of samples near the data


def protocol_metrics(cfg) -> dict[str, float]:
    """The evaluation protocol's metrics of samples near the data: the keys (and scale) a real evaluation reports.
    Computed once per process and dataset (a few seconds: the real statistics)."""
    key = json.dumps(asdict(cfg.data), sort_keys=True) + str(cfg.eval.num_samples)
    if key not in _KEYS:
        from ganpipe.data import get_dataset
        from ganpipe.metrics import Evaluator

        data = get_dataset(cfg.data)
        evaluator = Evaluator(data, cfg.eval.num_samples)
        fake = data.sample(evaluator.num_samples, torch.Generator().manual_seed(0)) * 1.01  # near the real data, not it
        _KEYS[key] = evaluator.evaluate(fake)
    return _KEYS[key]


class NoTrainTrainer:
    """The Trainer's reporting without its training: evaluations at every `eval.every` G steps and at
    `train.steps` (the loop's cadence), each with the protocol's metric keys plus the loop's (losses,
    steps/s, eval seconds, objective), values drawn around protocol_metrics', seeded by the config;
    the best-so-far rule of ganpipe.objective; a small checkpoint (step, best, draws) that resumes it."""

    grid_columns = None
    sample_modes = None

    def __init__(self, cfg, device: str = "cpu", objectives: list[str] | None = None):
        from ganpipe.config.schema import default_objectives

        self.cfg = cfg
        self.objectives = list(objectives or default_objectives(cfg.data.dataset))
        self.base = protocol_metrics(cfg)
        self.rng = random.Random(json.dumps(asdict(cfg), sort_keys=True))
        self.step = 0
        self.best: dict[str, float] = {}
        self._since = time.perf_counter()

    def _metrics(self, steps: int) -> dict[str, float]:
        """One evaluation after `steps` G steps "trained" since the last one."""
        t0 = time.perf_counter()
        shrink = 0.5 + 0.5 * self.rng.random() ** (self.step / self.cfg.train.steps)  # trials improve unevenly
        metrics = {k: v * shrink * (0.9 + 0.2 * self.rng.random()) for k, v in self.base.items()}
        metrics.update(loss_d=1.0 + self.rng.random(), loss_g=1.0 + self.rng.random(),
                       steps_per_sec=steps / max(t0 - self._since, 1e-9), eval_seconds=time.perf_counter() - t0)
        metrics[OBJECTIVE] = objective(metrics, self.objectives)
        return metrics

    def train(self, reporter=None, progress=None) -> TrialResult:
        reporter = reporter or NullReporter()
        every, steps, metrics = self.cfg.eval.every, self.cfg.train.steps, {}
        while self.step < steps:
            last, self.step = self.step, min((self.step // every + 1) * every, steps)  # the loop evaluates here
            metrics = self._metrics(self.step - last)
            if not self.best or metrics[OBJECTIVE] < self.best[OBJECTIVE]:
                self.best = {"step": self.step, **metrics}
            reporter.on_eval(EvalReport(self.step, metrics, None), self)
            self._since = time.perf_counter()
        result = TrialResult("finished", self.step, metrics, self.best)
        reporter.on_end(result, self)
        return result

    def save_checkpoint(self, path) -> Path:
        path = checkpoint_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from ganpipe.config import trial_to_dict

        torch.save({"config": trial_to_dict(self.cfg), "step": self.step, "best": self.best,
                    "rng": self.rng.getstate()}, path)
        return path

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", steps: int | None = None,
                        objectives: list[str] | None = None) -> "NoTrainTrainer":
        from ganpipe.config import trial_from_dict

        state = torch.load(checkpoint_file(path), weights_only=True)
        trainer = cls(trial_from_dict(state["config"]), device, objectives)
        trainer.step, trainer.best = state["step"], state["best"]
        trainer.rng.setstate(state["rng"])
        return trainer


# ---- a trial that tracks nothing ----------------------------------------------------------------
class NoTracking:
    """TrialRun's interface, doing nothing: the trial's results carry an empty mlflow_run_id."""

    run_id = ""
    diverged_before = ""

    def log_eval(self, step, metrics, png) -> None:
        pass

    def flush(self, timeout=None) -> bool:
        return True

    def close(self, timeout=10) -> None:
        pass

    def log_restart(self, step) -> None:
        pass

    def mark_diverged(self, message) -> None:
        pass
