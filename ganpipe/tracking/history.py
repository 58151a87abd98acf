"""Reads for the stability report: metric histories, artifact listings and downloads, model versions of a
sweep, and logging a folder of files (the report itself) to a run."""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from ganpipe.tracking.errors import read_or_none
from ganpipe.tracking.runs import downloaded, has_artifact


def metric_history(c: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of `key`, by step (the last logged value of a step wins)."""
    by_step = {}
    for m in sorted(c.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        by_step[m.step] = m.value
    return sorted(by_step.items())


def artifact_paths(c: MlflowClient, run_id: str, folder: str | None = None) -> list[str]:
    """Paths of the files directly under `folder` of a run's artifacts (none if it has no such folder)."""
    listed = read_or_none(f"the artifacts of run {run_id}", lambda: c.list_artifacts(run_id, folder)) or []
    return [a.path for a in listed if not a.is_dir]


def download_artifact(c: MlflowClient, run_id: str, path: str, folder: Path) -> Path | None:
    """A run's artifact downloaded into `folder`, or None if it has none at `path`; TrackingUnavailable if the
    store could not say or the download failed."""
    return downloaded(c, run_id, path, folder) if has_artifact(c, run_id, path) else None


def versions_from_parent(c: MlflowClient, parent_run_id: str) -> list:
    """Model versions registered from trials of the sweep `parent_run_id` (tag ganpipe.parent_run)."""
    return list(read_or_none(f"the model versions of run {parent_run_id}", lambda: c.search_model_versions(
        f"tags.`ganpipe.parent_run` = '{parent_run_id}'")) or [])


def log_folder(c: MlflowClient, run_id: str, folder: Path, artifact_path: str) -> None:
    """Every file of `folder` under `artifact_path` of the run's artifacts."""
    c.log_artifacts(run_id, str(folder), artifact_path)
