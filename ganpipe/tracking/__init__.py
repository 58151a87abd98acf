"""The only MLflow code: where the store is, experiments and runs, a trial's child run, the model registry.

Everything goes through an explicit `MlflowClient` (`client(uri)`), handed back to these functions as
an opaque handle: no global active-run state, which is what makes it safe inside Ray workers, and no
module outside this package calls MLflow itself.
"""
from ganpipe.tracking.errors import TrackingFailed, TrackingUnavailable, failures_stop
from ganpipe.tracking.history import artifact_paths, download_artifact, log_folder, metric_history, versions_from_parent
from ganpipe.tracking.registry import (
    BEST_CHECKPOINT,
    SOURCE_TAG,
    ModelNotFound,
    download_best_checkpoint,
    find_version,
    fluent_tracking_uri,
    load_model,
    log_best_checkpoint,
    model_info,
    register_generator,
    registered_model,
    registered_model_names,
    set_alias,
    version_by_alias,
)
from ganpipe.tracking.runs import (
    BEST_PREFIX,
    PARENT_TAG,
    REASON_TAG,
    STATUS_TAG,
    TRIAL_TAG,
    best_values,
    children,
    close_running_children,
    delete_run,
    end_run,
    ensure_experiment,
    experiment_name,
    experiment_names,
    find_experiment,
    find_run,
    get_run,
    latest_run,
    log_files,
    log_metrics,
    log_texts,
    metric_steps,
    read_text_artifact,
    reopen,
    search_all,
    set_tag,
    start_parent_run,
    find_trial_run,
)
from ganpipe.tracking.store import (
    DEFAULT_URI,
    TRACKING_URI_ENV,
    check_reachable,
    client,
    resolve_uri,
    shareable_uri,
    some_names,
    store_missing,
    uri_source,
)
from ganpipe.tracking.trial_run import RetryingSender, TrialRun
from ganpipe.tracking.views import experiments_with_view, set_trials_view, trials_view_path

# the submodules are attributes of the package too: none may share a name with a function exported here
__all__ = [name for name in dir()
           if not name.startswith("_")
           and name not in ("errors", "history", "registry", "resend", "runs", "store", "trial_run", "views")]
