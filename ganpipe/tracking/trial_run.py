"""One trial's child run, and the background sender that keeps training going while MLflow is down."""
from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import threading
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from ganpipe import scratch
from ganpipe.tracking.errors import TrackingFailed, describe, transient
from ganpipe.tracking.runs import (PARENT_TAG, REASON_TAG, STATUS_TAG, TRIAL_TAG, create_run_once, log_metrics,
                                   reopen)
from ganpipe.tracking.store import client

# ---- sending without blocking training -------------------------------------------------------
RETRY_FOR = float(os.environ.get("GANPIPE_TRACKING_RETRY_S", "600"))
"""Seconds the sender keeps retrying transient failures (connection errors, timeouts, 408, 429, 500, 502-504) of one
call (no call getting through meanwhile) before it gives up on the run: 10 min by default, or
$GANPIPE_TRACKING_RETRY_S. Each attempt is itself one MLflow call, which MLflow's HTTP client already
retries on those failures (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 with backoff factor 2: ~4 min by default, and
MLFLOW_HTTP_REQUEST_TIMEOUT=120 s per request), so a dead server fails a trial within RETRY_FOR plus one such
call. A permanent error (400, 401/403, 404, a deleted run or experiment) fails it at once."""

_STOP = object()


class RetryingSender:
    """A daemon thread that runs queued MLflow calls in order.

    A transient failure is retried with backoff for up to `retry_for` seconds (RETRY_FOR). Any other
    failure, or transient ones for longer, is final: the sender keeps the error (`.error`), drops the rest
    of the queue, and flush() raises TrackingFailed with it. close() stops the thread.
    """

    def __init__(self, what: str, max_delay: float = 30.0, retry_for: float | None = None):
        self.what, self.max_delay = what, max_delay
        self.retry_for = RETRY_FOR if retry_for is None else retry_for
        self.error: str | None = None
        self.queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="ganpipe-mlflow-sender")
        self.thread.start()

    def put(self, call) -> None:
        self.queue.put(call)

    def _loop(self) -> None:
        while True:
            call = self.queue.get()
            try:
                if call is _STOP:
                    return
                if self.error is None:  # after a final failure the queue is only drained
                    self._send(call)
            finally:
                self.queue.task_done()

    def _send(self, call) -> None:
        since, delay, warned = time.monotonic(), 1.0, False
        while True:
            try:
                call()
                return
            except Exception as err:  # noqa: BLE001 - sorted into transient and final below
                waited = time.monotonic() - since
                if not transient(err):
                    self.error = f"MLflow refused a write to {self.what}: {describe(err)}"
                elif self._stop.is_set():
                    self.error = f"{self.what}: closed while MLflow was failing ({describe(err)})"
                elif waited >= self.retry_for:
                    self.error = (f"MLflow failed writes to {self.what} for {waited:.0f} s (the limit is "
                                  f"{self.retry_for:g} s, $GANPIPE_TRACKING_RETRY_S): {describe(err)}")
                if self.error:
                    print(f"ganpipe: {self.error}; dropping what is queued for it", file=sys.stderr)
                    return
                if not warned:
                    print(f"ganpipe: MLflow unreachable for {self.what} ({describe(err)}); retrying in the "
                          f"background for up to {self.retry_for:g} s", file=sys.stderr)
                    warned = True
                self._stop.wait(min(delay, max(self.retry_for - waited, 0.01)))
                delay = min(delay * 2, self.max_delay)

    def flush(self, timeout: float) -> bool:
        """True once everything queued was sent; False if `timeout` seconds passed first.
        TrackingFailed if the sender gave up (the failure is final: nothing more will be sent)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and self.error is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        if self.error is not None:
            raise TrackingFailed(self.error)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread: a call still failing gives up now, and what is left in the queue is dropped."""
        self._stop.set()
        self.queue.put(_STOP)
        self.thread.join(timeout)


# ---- one trial's child run --------------------------------------------------------------
class TrialRun:
    """The child run of one Tune trial: found by trial id, created only the first time."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, trial_id: str, run_name: str,
                 params: dict, config: dict, where: dict[str, str] | None = None):
        """`where`: tags saying where this attempt runs (node); updated at every (re)start."""
        self.client = client(uri)
        mine = f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
        existing = self.client.search_runs([experiment_id], filter_string=mine, max_results=1)
        if existing:
            self.run_id = existing[0].info.run_id
            self.tags = existing[0].data.tags
            reopen(self.client, self.run_id)
            if where:
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in where.items()])
        else:
            tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id, **(where or {})}
            self.run_id = create_run_once(self.client, experiment_id, run_name, tags, same=mine)
            self.tags = tags
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.client.log_text(self.run_id, json.dumps(config, indent=2), "config.json")
        self.last_step = self._last_logged_step()
        self.sender = RetryingSender(f"run {self.run_id}")
        self._unsent_pngs: set[Path] = set()  # folders of PNGs queued for MLflow; close() removes what is left

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
            kept = scratch.new_folder("png") / png.name  # the trial deletes png before the sender sends it
            shutil.copy(png, kept)
            self._unsent_pngs.add(kept.parent)
            self.sender.put(lambda: self._send_png(kept))

    def _send_png(self, png: Path) -> None:
        self.client.log_artifact(self.run_id, str(png), "samples")
        self._unsent_pngs.discard(png.parent)
        shutil.rmtree(png.parent, ignore_errors=True)

    def flush(self, timeout: float | None = None) -> bool:
        """True once everything queued reached MLflow; False if `timeout` seconds passed first (default: the
        sender's retry limit plus 5 min, one MLflow call with its own retries). TrackingFailed if the sender
        gave up (a permanent error, or failures for longer than its limit): the trial must fail."""
        return self.sender.flush(self.sender.retry_for + 300 if timeout is None else timeout)

    def close(self, timeout: float = 10) -> None:
        """At the trial's end, also after an error: send what is queued (up to `timeout` s), then stop the
        sender's thread. Never raises (flush() first says whether everything was sent). The PNGs that did
        not reach MLflow (the sender gave up, or the time ran out) are deleted: nothing will send them."""
        try:
            self.sender.flush(timeout)
        except TrackingFailed:
            pass
        finally:
            self.sender.close()
            for folder in list(self._unsent_pngs):
                shutil.rmtree(folder, ignore_errors=True)
            self._unsent_pngs.clear()

    def log_restart(self, step: int) -> None:
        log_metrics(self.client, self.run_id, {"restarted_at_step": step}, step)

    def mark_diverged(self, message: str) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(STATUS_TAG, "diverged"), RunTag(REASON_TAG, message[:5000])])
