"""Driver-side Tune callbacks.

CloseChildRuns ends every child run: FINISHED, FAILED or KILLED, never left RUNNING. A
trial cannot close its own run when Tune stops it (ASHA, or a final report) because its
process is simply torn down; the driver sees every ending, so it closes runs here.

UploadStudy keeps a snapshot of the Optuna study in the experiment folder when that is
in S3 (the study itself is a sqlite file on the driver's disk, see ganpipe.tune.storage).

NoTensorBoardFiles takes the place of the TensorBoard logger Tune adds to every run where
tensorboardX is installed, so Tune does not add it (its CSV and JSON loggers stay).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ray import tune
from ray.tune.logger import TBXLoggerCallback

from ganpipe import tracking
from ganpipe.config import resolve_trial
from ganpipe.config.schema import SweepConfig
from ganpipe.tune.sweep_run import SweepRun


class CloseChildRuns(tune.Callback):
    def __init__(self, sweep: SweepConfig, run: SweepRun):
        self.sweep, self.run = sweep, run

    def _run_id(self, trial) -> str | None:
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id:
            return run_id
        found = tracking.find_trial_run(self.run.client(), self.run.experiment_id, self.run.parent_run_id, trial.trial_id)
        return found.info.run_id if found else None

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self._run_id(trial)
        if run_id is None:
            return
        steps = resolve_trial(self.sweep, trial.config).train.steps
        reached = (trial.last_result or {}).get("step", 0)
        status = "finished" if reached >= steps else "early-stopped"
        reason = "" if status == "finished" else f"stopped by the scheduler at step {reached} of {steps}"
        tracking.end_run(self.run.client(), run_id, "FINISHED", reason, status)

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self._run_id(trial)
        if run_id is None:
            return
        c = self.run.client()
        tags = tracking.get_run(c, run_id).data.tags
        if tags.get(tracking.STATUS_TAG) == "diverged":
            tracking.end_run(c, run_id, "FAILED", tags.get(tracking.REASON_TAG, ""), "diverged")
        else:
            tracking.end_run(c, run_id, "FAILED", _error_text(trial), "failed")


def _error_text(trial) -> str:
    """The last line of the trial's error (the exception), which is what a person wants first."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        return lines[-1] if lines else "error"
    return str(getattr(trial, "error_msg", "") or "error")


class UploadStudy(tune.Callback):
    """Upload the study's snapshot when a trial starts or ends, and at most every `every` seconds otherwise."""

    def __init__(self, exp_uri: str, every: float = 15.0):
        self.exp_uri, self.every = exp_uri, every
        self._last, self._mtime = 0.0, None

    def _upload(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.every:
            return  # on_step_end runs every Tune loop step: nothing else happens before this check
        from ganpipe.tune.storage import Location, study_path, upload_study

        exp = Location(self.exp_uri)
        try:
            mtime = study_path(exp).stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._mtime:
            return
        try:
            upload_study(exp)
            self._last, self._mtime = time.monotonic(), mtime
        except Exception as err:  # a snapshot that fails now is retried at the next event; never stop the sweep
            logging.getLogger(__name__).warning("could not upload the Optuna study to %s: %s", exp, err)

    def on_step_end(self, iteration, trials, **info):
        self._upload()

    def on_trial_start(self, iteration, trials, trial, **info):
        self._upload(force=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._upload(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._upload(force=True)

    def on_experiment_end(self, trials, **info):
        self._upload(force=True)


class NoTensorBoardFiles(TBXLoggerCallback):
    """Writes nothing. Tune adds a TBXLoggerCallback unless one is among the callbacks; its event files
    duplicate what MLflow shows and cost the driver 7.5 ms of CPU per result, a quarter of its time at scale
    (docs/benchmarks.md, tracking at scale)."""

    def __init__(self):  # no tensorboardX writer
        self._trial_writer, self._trial_result = {}, {}

    def log_trial_start(self, trial):
        pass

    def log_trial_result(self, iteration, trial, result):
        pass

    def log_trial_end(self, trial, failed: bool = False):
        pass
