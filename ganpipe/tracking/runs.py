"""Experiments and runs: the sweep's parent run, its nested child runs, their tags, metrics and artifacts.

Layout (SPEC "MLflow layout"): experiment = sweep name; one parent run per sweep execution; one nested
child run per Tune trial, found again by its trial id. Every search pages through all results.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ganpipe.tracking.errors import TrackingUnavailable, describe, read_or_none
from ganpipe.tracking.resend import create_once

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "ganpipe.trial_id"
REASON_TAG = "ganpipe.reason"
STATUS_TAG = "ganpipe.status"  # finished | early-stopped | diverged | failed | killed
# a trial's best checkpoint's metrics (ganpipe.best.fid, ganpipe.best.objective, ganpipe.best.step, ...) are tags:
# as metrics they were single-point charts ahead of the curves on a run's page (MLflow 3.17 puts every metric
# section named by a "prefix/" before the unprefixed curves, so no prefix sorts last). The best objective so
# far is also a curve, `best_objective`, logged with every evaluation: what the runs table sorts by
BEST_PREFIX = "ganpipe.best."


def best_values(run) -> dict[str, float]:
    """A run's best checkpoint's metrics from its tags ({} if none was attached); runs logged before they were
    tags kept them as `best_*` metrics."""
    found = {k[len(BEST_PREFIX):]: float(v) for k, v in run.data.tags.items() if k.startswith(BEST_PREFIX)}
    metrics = run.data.metrics
    if found or "best_step" not in metrics:
        return found
    return {k[len("best_"):]: v for k, v in metrics.items() if k.startswith("best_")}


PAGE = 1000  # runs per search_runs page


# ---- experiments ----------------------------------------------------------------------------
def find_experiment(c: MlflowClient, name: str):
    """The experiment named `name`, or None."""
    return c.get_experiment_by_name(name)


def experiment_names(c: MlflowClient, limit: int) -> list[str]:
    return [e.name for e in c.search_experiments(max_results=limit)]


def experiment_name(c: MlflowClient, experiment_id: str) -> str:
    return c.get_experiment(experiment_id).name


# ---- runs -----------------------------------------------------------------------------------
def get_run(c: MlflowClient, run_id: str):
    return c.get_run(run_id)


def find_run(c: MlflowClient, run_id: str):
    """The run, or None if the store has no such run; TrackingUnavailable if the store could not say."""
    return read_or_none(f"run {run_id}", lambda: c.get_run(run_id))


def set_tag(c: MlflowClient, run_id: str, key: str, value: str) -> None:
    c.set_tag(run_id, key, value)


def delete_run(c: MlflowClient, run_id: str) -> None:
    """MLflow keeps a deleted run restorable (`mlflow runs restore`)."""
    c.delete_run(run_id)


def metric_steps(c: MlflowClient, run_id: str, key: str) -> list[int]:
    """The steps at which `key` was logged, in logging order."""
    return [m.step for m in c.get_metric_history(run_id, key)]


def read_text_artifact(c: MlflowClient, run_id: str, path: str, folder: Path) -> str | None:
    """A small text artifact of a run (downloaded into `folder`), or None if the run has none there;
    TrackingUnavailable if the store could not say or the download failed."""
    return None if not has_artifact(c, run_id, path) else downloaded(c, run_id, path, folder).read_text()


def has_artifact(c: MlflowClient, run_id: str, path: str) -> bool:
    """Whether the run has a file at artifact `path` (False for no such run); TrackingUnavailable if the store
    could not say. Asked of the listing because MLflow answers a download that failed for any reason (a 5xx,
    401, a dropped connection) as RESOURCE_DOES_NOT_EXIST."""
    folder = path.rpartition("/")[0] or None
    listed = read_or_none(f"{path} of run {run_id}", lambda: c.list_artifacts(run_id, folder)) or []
    return any(f.path == path and not f.is_dir for f in listed)


def downloaded(c: MlflowClient, run_id: str, path: str, folder: Path) -> Path:
    """A run's artifact file that exists (has_artifact), downloaded into `folder`; TrackingUnavailable if not.
    Read from the run's artifact store itself, whose error says what failed (MlflowClient.download_artifacts
    reads through a runs:/ URI, which drops it)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repo = get_artifact_repository(c.get_run(run_id).info.artifact_uri, tracking_uri=c.tracking_uri)
        return Path(repo.download_artifacts(path, str(folder)))
    except (MlflowException, OSError) as err:
        raise TrackingUnavailable(f"could not read {path} of run {run_id} from the tracking store, which lists "
                                  f"it: {describe(err)}") from err


# ---- the sweep's parent run ---------------------------------------------------------------
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # which view the MLflow UI (3.x) opens an experiment on
TRAINING_KIND = "custom_model_development"  # its "Training runs" view; unset, 3.17 opens the GenAI overview
DESCRIPTION_TAG = "mlflow.note.content"  # the experiment's description in the UI


def ensure_experiment(c: MlflowClient, name: str, description: str = "") -> str:
    """The experiment's id, created if new; either way it opens on MLflow's training-runs view, and a non-empty
    `description` (the sweep's) becomes its description."""
    found = c.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else create_once(
        lambda: c.create_experiment(name), find=lambda: getattr(c.get_experiment_by_name(name), "experiment_id", None))
    tags = found.tags if found is not None else {}
    wanted = {EXPERIMENT_KIND_TAG: TRAINING_KIND, **({DESCRIPTION_TAG: description} if description else {})}
    for key, value in wanted.items():
        if tags.get(key) != value:
            c.set_experiment_tag(experiment_id, key, value)
    return experiment_id


CREATED_TAG = "ganpipe.created"  # a token set at creation: finds the run whose create answer was lost


def create_run_once(c: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str], same: str) -> str:
    """Create a run and return the first run matching the filter `same` (this one, unless a copy exists).
    A create whose answer is lost (a gateway's 504 after the server made the run, a dropped connection) is
    looked for before it is sent again (resend.create_once). MLflow before 3.18 sent it again itself: two runs,
    the one whose answer was lost left RUNNING; the first is kept, the later copies deleted."""
    def matching() -> list:
        return c.search_runs([experiment_id], filter_string=same, max_results=10)

    def oldest(runs: list):
        return min(runs, key=lambda r: (r.info.start_time, r.info.run_id), default=None)

    created = create_once(lambda: c.create_run(experiment_id, run_name=run_name, tags=tags),
                          find=lambda: oldest(matching())).info.run_id
    found = matching()
    if len(found) < 2:
        return created
    first = oldest(found)
    for run in found:
        if run.info.run_id != first.info.run_id:
            c.delete_run(run.info.run_id)
    return first.info.run_id


def start_parent_run(c: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A new sweep, pipeline or stage run, made once even when the answer to its create is lost."""
    token = uuid.uuid4().hex
    return create_run_once(c, experiment_id, run_name, {**tags, CREATED_TAG: token},
                           same=f"tags.`{CREATED_TAG}` = '{token}'")


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


def search_all(c: MlflowClient, experiment_ids: list[str], filter_string: str = "",
               order_by: list[str] | None = None) -> list:
    """Every matching run, page by page (one search_runs call answers at most one page)."""
    found, token = [], None
    while True:
        page = c.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by, max_results=PAGE,
                             page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def children(c: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    return search_all(c, [experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'")


def find_trial_run(c: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str):
    """The child run of Tune trial `trial_id` under the parent run, or None."""
    found = c.search_runs([experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                          f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=1)
    return found[0] if found else None


def latest_run(c: MlflowClient, experiment_id: str, kind: str):
    """The latest run tagged ganpipe.kind = `kind` (sweep, pipeline) in the experiment, or None."""
    found = c.search_runs([experiment_id], filter_string=f"tags.`ganpipe.kind` = '{kind}'",
                          order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def close_running_children(c: MlflowClient, experiment_id: str, parent_run_id: str, status: str, reason: str) -> int:
    """End every child still RUNNING (e.g. after Ctrl-C); returns how many."""
    n = 0
    for run in children(c, experiment_id, parent_run_id):
        if run.info.status == "RUNNING":
            end_run(c, run.info.run_id, status, reason, status.lower())
            n += 1
    return n
