"""The only module that talks to MLflow: experiments, parent and child runs, metrics, artifacts.

Layout (SPEC "MLflow layout"): experiment = sweep name; one parent run per sweep
execution; one nested child run per Tune trial, found again by its trial id so a
retried or resumed trial continues its run instead of creating a second one.
Everything goes through an explicit `MlflowClient`: no global active-run state,
which is what makes it safe inside Ray workers.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlflow.db"
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # SQLAlchemy stores MLflow accepts
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "ganpipe.trial_id"
REASON_TAG = "ganpipe.reason"
STATUS_TAG = "ganpipe.status"  # finished | early-stopped | diverged | failed | killed


# ---- where ---------------------------------------------------------------------------
def uri_source(cli_uri: str | None, config_uri: str = "") -> str:
    """Where resolve_uri takes the URI from: "--tracking-uri", "tracking.uri" (the sweep file),
    "$MLFLOW_TRACKING_URI" or "default"; for messages that blame the right place."""
    return ("--tracking-uri" if cli_uri else "tracking.uri" if config_uri
            else f"${TRACKING_URI_ENV}" if os.environ.get(TRACKING_URI_ENV) else "default")


def resolve_uri(cli_uri: str | None, config_uri: str = "") -> str:
    """--tracking-uri, then the sweep's tracking.uri, then $MLFLOW_TRACKING_URI, then ./mlflow.db.

    A relative sqlite path is made absolute here, in the driver: Tune runs trials in
    their own working directories, where a relative path would mean another file.
    """
    uri = cli_uri or config_uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def check_reachable(uri: str, timeout: float = 5.0) -> str | None:
    """None if the tracking store can be used, else why not (checked before anything starts)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status == 200:
                    return None
                return f"tracking server {uri} answered /health with HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            return f"tracking server {uri} is unreachable ({getattr(err, 'reason', err)})"
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            return f"folder {folder} of the sqlite tracking store does not exist"
        if not os.access(folder, os.W_OK):
            return f"folder {folder} of the sqlite tracking store is not writable"
        return None
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme in DATABASE_PORTS:  # a database server: is anything listening? (its credentials show later)
        parsed = urllib.parse.urlsplit(uri)
        try:
            host, port = parsed.hostname, parsed.port or DATABASE_PORTS[scheme]
        except ValueError as err:
            return f"{uri}: {err}"
        try:
            socket.create_connection((host or "localhost", port), timeout=timeout).close()
        except OSError as err:
            return f"database server {host}:{port} of the tracking store is unreachable ({err.strerror or err})"
        return None
    if (scheme == "file" or not scheme) and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
        return None  # MLflow's folder store, which MLflow 3 only opens when told to
    folder = "" if scheme not in ("file", "") else (" (a local folder: MLflow 3 refuses its file store unless "
                                                      "MLFLOW_ALLOW_FILE_STORE=true; use sqlite:///FILE.db)")
    return (f"{uri}: unsupported tracking URI{folder}; use http(s)://HOST:PORT (a tracking server), sqlite:///FILE.db "
            f"or {', '.join(f'{s}://...' for s in DATABASE_PORTS)}")


def some_names(names: list[str], shown: int = 10) -> str:
    """'a, b, c' for an error message that lists what exists; at most `shown`, then '...'; 'none' if empty.
    Callers ask the store for shown + 1 names, which is enough to know whether there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "") or "none"


def store_missing(uri: str) -> bool:
    """True for a sqlite store whose file does not exist yet: a read-only lookup (promote, sample) must say so,
    not create it (MLflow creates the file and its tables on first use)."""
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


# ---- the sweep's parent run ---------------------------------------------------------------
def ensure_experiment(c: MlflowClient, name: str) -> str:
    found = c.get_experiment_by_name(name)
    return found.experiment_id if found is not None else c.create_experiment(name)


def start_parent_run(c: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    return c.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def log_texts(c: MlflowClient, run_id: str, files: dict[str, str]) -> None:
    """Log small text files (YAML, JSON, CSV, Markdown) as artifacts, by artifact path."""
    for name, text in files.items():
        c.log_text(run_id, text, name)


def log_files(c: MlflowClient, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path)


def log_metrics(c: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def reopen(c: MlflowClient, run_id: str) -> None:
    """A resumed sweep or trial carries on in the same run (its tags stay: a retry reads how it last ended)."""
    c.update_run(run_id, status="RUNNING")


def end_run(c: MlflowClient, run_id: str, status: str, reason: str = "", ganpipe_status: str = "") -> None:
    """status is FINISHED, FAILED or KILLED; the reason lands in a tag people can filter on. No reason removes
    an earlier one (a resumed run that finishes drops "interrupted; resume with --resume")."""
    if reason:
        c.set_tag(run_id, REASON_TAG, reason[:5000])
    else:
        try:
            c.delete_tag(run_id, REASON_TAG)
        except MlflowException:
            pass  # none was set
    if ganpipe_status:
        c.set_tag(run_id, STATUS_TAG, ganpipe_status)
    c.set_terminated(run_id, status=status)


def children(c: MlflowClient, experiment_id: str, parent_run_id: str):
    return c.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=5000
    )


def close_running_children(c: MlflowClient, experiment_id: str, parent_run_id: str, status: str, reason: str) -> int:
    """End every child still RUNNING (e.g. after Ctrl-C); returns how many."""
    n = 0
    for run in children(c, experiment_id, parent_run_id):
        if run.info.status == "RUNNING":
            end_run(c, run.info.run_id, status, reason, status.lower())
            n += 1
    return n


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



# ---- best checkpoints and the model registry -------------------------------------------
BEST_CHECKPOINT = "best_checkpoint"  # artifact folder of a child run holding its best checkpoint
SOURCE_TAG = "ganpipe.source"  # "<run id>@<step>": which checkpoint a model version came from


def log_best_checkpoint(c: MlflowClient, run_id: str, checkpoint_file: Path, metrics: dict[str, float]) -> None:
    """Keep a trial's best checkpoint with its run, so promotion needs nothing but MLflow."""
    c.log_artifact(run_id, str(checkpoint_file), BEST_CHECKPOINT)
    log_metrics(c, run_id, {f"best_{k}": float(v) for k, v in metrics.items()}, int(metrics.get("step", 0)))


def download_best_checkpoint(c: MlflowClient, run_id: str, folder: Path) -> Path:
    return Path(c.download_artifacts(run_id, f"{BEST_CHECKPOINT}/checkpoint.pt", str(folder)))


def find_version(c: MlflowClient, model_name: str, source: str):
    """The model version registered from `source` before, if any (promotion is idempotent)."""
    if not _model_exists(c, model_name):
        return None
    found = c.search_model_versions(f"name = '{model_name}' and tags.`{SOURCE_TAG}` = '{source}'")
    return found[0] if found else None


def _model_exists(c: MlflowClient, model_name: str) -> bool:
    try:
        c.get_registered_model(model_name)
        return True
    except MlflowException:
        return False


def version_by_alias(c: MlflowClient, model_name: str, alias: str):
    try:
        return c.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def register_generator(uri: str, run_id: str, model_name: str, model, example, metadata: dict, tags: dict[str, str]):
    """Log a model in the mlflow.pytorch flavour (pt2: loads without ganpipe installed) and register it.

    `model` takes one float32 tensor like `example` (batch first, the batch is dynamic): z for a
    generator, [z | class weights] for a conditional one, images for a translator (see
    Trainer.export); `metadata` (the model's MLmodel metadata) says which and with what sizes.
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    with fluent_tracking_uri(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name="generator", signature=signature, input_example=example.numpy(), metadata=metadata,
            serialization_format="pt2", pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        return mlflow.register_model(info.model_uri, model_name, tags=tags)


@contextmanager
def fluent_tracking_uri(uri: str | None):
    """mlflow's fluent API pointed at `uri` for a block, then put back. mlflow.set_tracking_uri also
    sets $MLFLOW_TRACKING_URI, which every later subprocess (a sweep, a Ray worker) would inherit."""
    import mlflow

    if not uri:
        yield
        return
    env, before = os.environ.get(TRACKING_URI_ENV), mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = env


def set_alias(c: MlflowClient, model_name: str, alias: str, version: str) -> None:
    c.set_registered_model_alias(model_name, alias, version)
