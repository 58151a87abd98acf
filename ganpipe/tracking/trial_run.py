"""One trial's child run, and the background sender that keeps training going while MLflow is down."""
from __future__ import annotations

import json
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from ganpipe.tracking.runs import PARENT_TAG, REASON_TAG, STATUS_TAG, TRIAL_TAG, log_metrics, reopen
from ganpipe.tracking.store import client

# ---- sending without blocking training -------------------------------------------------------
class RetryingSender:
    """A daemon thread that runs queued MLflow calls in order, retrying each with backoff until it works."""

    def __init__(self, what: str, max_delay: float = 30.0):
        self.what, self.max_delay = what, max_delay
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="ganpipe-mlflow-sender").start()

    def put(self, call) -> None:
        self.queue.put(call)

    def _loop(self) -> None:
        while True:
            call = self.queue.get()
            delay, warned = 1.0, False
            while True:
                try:
                    call()
                    break
                except Exception as err:  # server down or restarting: keep the call, try again later
                    if not warned:
                        print(f"ganpipe: MLflow unreachable for {self.what} ({type(err).__name__}); "
                              "retrying in the background", file=sys.stderr)
                        warned = True
                    time.sleep(delay)
                    delay = min(delay * 2, self.max_delay)
            self.queue.task_done()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was sent; False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


# ---- one trial's child run --------------------------------------------------------------
class TrialRun:
    """The child run of one Tune trial: found by trial id, created only the first time."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, trial_id: str, run_name: str,
                 params: dict, config: dict, where: dict[str, str] | None = None):
        """`where`: tags saying where this attempt runs (node); updated at every (re)start."""
        self.client = client(uri)
        existing = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1,
        )
        if existing:
            self.run_id = existing[0].info.run_id
            self.tags = existing[0].data.tags
            reopen(self.client, self.run_id)
            if where:
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in where.items()])
        else:
            tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id, **(where or {})}
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
            self.tags = tags
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.client.log_text(self.run_id, json.dumps(config, indent=2), "config.json")
        self.last_step = self._last_logged_step()
        self.sender = RetryingSender(f"run {self.run_id}")

    @property
    def diverged_before(self) -> str:
        """The divergence message if an earlier attempt of this trial diverged, else ''."""
        return self.tags.get(REASON_TAG, "") if self.tags.get(STATUS_TAG) == "diverged" else ""

    def _last_logged_step(self) -> int:
        history = self.client.get_metric_history(self.run_id, "fid")
        return max((m.step for m in history), default=-1)

    def log_eval(self, step: int, metrics: dict[str, float], png: Path | None) -> None:
        """Queue one evaluation (one batched call + its PNG); an evaluation logged before a retry is skipped.

        Sent by a background thread that retries with backoff, so training goes on while
        the tracking server is down; `flush()` waits for the queue. The driver reconciles
        metrics from Tune's results at the end, so nothing a killed trial queued is lost.
        """
        if step <= self.last_step:
            return
        self.last_step = step
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.sender.put(lambda: self.client.log_batch(self.run_id, metrics=batch))
        if png is not None:
            kept = Path(tempfile.mkdtemp(prefix="ganpipe-png-")) / png.name
            shutil.copy(png, kept)
            self.sender.put(lambda: (self.client.log_artifact(self.run_id, str(kept), "samples"),
                                     shutil.rmtree(kept.parent, ignore_errors=True)))

    def flush(self, timeout: float = 600) -> bool:
        return self.sender.flush(timeout)

    def log_restart(self, step: int) -> None:
        log_metrics(self.client, self.run_id, {"restarted_at_step": step}, step)

    def mark_diverged(self, message: str) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(STATUS_TAG, "diverged"), RunTag(REASON_TAG, message[:5000])])
