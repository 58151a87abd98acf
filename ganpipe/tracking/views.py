"""A saved view of the MLflow UI (3.x) for each sweep's experiment: its trials, sorted by their best objective,
with the metric and parameter columns a GAN researcher reads first, opened by one link.

MLflow's URL state for the runs table holds only the search facets (searchFilter, orderByKey, orderByAsc,
startTime, lifecycleFilter, modelVersionFilter, datasetsFilter); the selected columns live in the browser's
local storage. The one way a link brings columns along is the UI's own "shared view": the view state as JSON in
the experiment tag `mlflow.sharedViewState.<KEY>`, opened by `#/experiments/<id>/runs?viewStateShareKey=<KEY>`
(read from the installed UI's build, mlflow/server/js; checked in headless Chromium, tests/test_ui_browser.py).
"""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from ganpipe.tracking.runs import BEST_PREFIX, TRIAL_TAG

VIEW_KEY = "ganpipe-trials"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
HEADLINE = ("fid", "diversity", "modes")  # shown for every sweep; absent metrics show an empty column
BEST_OBJECTIVE = "best_objective"  # ganpipe.objective.BEST_OBJECTIVE: a trial's best objective so far, a curve


def column(kind: str, name: str) -> str:
    """The UI's key of a runs-table column: metrics.`fid`, params.`loss.name`, attributes.`Models`."""
    return f"{kind}.`{name}`"


def trials_view(objectives: list[str], params: list[str]) -> dict:
    """Every trial of the experiment (runs with a trial id: no parent run folds them), best objective first,
    with the best checkpoint's objectives, fid, diversity and modes (its ganpipe.best.* tags) and the
    searched parameters."""
    best = [*[o for o in objectives if o not in HEADLINE], *HEADLINE]  # the best checkpoint's, as tags
    return {
        "searchFilter": f"tags.`{TRIAL_TAG}` LIKE '%'",
        "orderByKey": column("metrics", BEST_OBJECTIVE),
        "orderByAsc": True,
        "selectedColumns": ([column("metrics", BEST_OBJECTIVE)] + [column("tags", BEST_PREFIX + m) for m in best]
                            + [column("params", p) for p in params] + [column("attributes", "Models")]),
    }


def set_trials_view(c: MlflowClient, experiment_id: str, objectives: list[str], params: list[str]) -> None:
    """Save (or refresh, for the latest sweep's objectives and searched parameters) the experiment's view."""
    c.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(trials_view(objectives, params)))


def trials_view_path(experiment_id: str) -> str:
    """The UI path (after the server's address) of an experiment's trials view."""
    return f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def experiments_with_view(c: MlflowClient, limit: int = 20) -> list[tuple[str, str]]:
    """(name, id) of the latest experiments that have a trials view, most recently created first."""
    found = c.search_experiments(max_results=limit, filter_string=f"tags.`{VIEW_TAG}` LIKE '%'",
                                 order_by=["creation_time DESC"])
    return [(e.name, e.experiment_id) for e in found]
