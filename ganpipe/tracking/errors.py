"""What an MLflow error means: absent, worth retrying, or a failure to stop on.

Only RESOURCE_DOES_NOT_EXIST says that something is absent. A 5xx, a 401/403, a timeout or a dropped
connection says nothing about the registry or the run, so a read that meets one raises TrackingUnavailable
instead of answering "none" (promotion would otherwise crown a new champion over one it could not see).

What MLflow 3.17 and 3.18 answer (sqlite store and `mlflow server` over REST alike):
- a missing run, registered model, or alias of a missing model: RESOURCE_DOES_NOT_EXIST (404);
- a missing alias of an existing model: INVALID_PARAMETER_VALUE (400), which is why aliases are read
  from the registered model (registry.version_by_alias) rather than trusting that code;
- a write to a deleted run or to a run of a deleted experiment: INVALID_PARAMETER_VALUE (400);
- sqlite "database is locked" and other SQLAlchemy OperationalErrors: TEMPORARILY_UNAVAILABLE (503);
- over HTTP, a non-JSON error page gets the code of its status (401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
  400 BAD_REQUEST, 404 ENDPOINT_NOT_FOUND); 408, 429, 500, 502, 503, 504 and connection errors are first
  retried by MLflow's own HTTP client (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, backoff factor 2, up to ~4 min per
  call by default), then end as INTERNAL_ERROR ("Max retries exceeded"). `transient` retries the same statuses.
  From 3.18 a POST that is unsafe to repeat (a create) is retried only on 408 and 429: ganpipe looks for what
  it asked for and sends it again itself (resend.create_once).
"""
from __future__ import annotations

import re
from contextlib import contextmanager

from mlflow.exceptions import MlflowException
from mlflow.utils.request_utils import _TRANSIENT_FAILURE_RESPONSE_CODES

TRANSIENT_STATUS = _TRANSIENT_FAILURE_RESPONSE_CODES  # what MLflow's HTTP client retries: 408, 429, 500, 502-504


class TrackingUnavailable(RuntimeError):
    """The tracking store did not answer a read (server error, auth, timeout): not the same as "absent"."""


class TrackingFailed(RuntimeError):
    """A trial's run could not be written: a permanent error, or transient ones for longer than allowed."""


def absent(err: BaseException) -> bool:
    """MLflow says it does not exist: RESOURCE_DOES_NOT_EXIST, or a 404 from the artifact store over HTTP.
    (MLflow also reports a download that failed for any reason as RESOURCE_DOES_NOT_EXIST: artifacts are
    read through runs.read_text_artifact, which lists before it downloads.)"""
    if isinstance(err, MlflowException):
        return err.error_code == "RESOURCE_DOES_NOT_EXIST"
    return isinstance(err, OSError) and http_status(err) == 404


def http_status(err: BaseException) -> int | None:
    """The HTTP status an error stands for, if it stands for one."""
    if isinstance(err, MlflowException):
        return err.get_http_status_code()
    status = getattr(getattr(err, "response", None), "status_code", None)  # requests' HTTPError (artifacts)
    return status if isinstance(status, int) else None


def transient(err: BaseException) -> bool:
    """Worth retrying: connection errors and timeouts, and the statuses MLflow's HTTP client retries (408, 429,
    500, 502, 503, 504). Not 400, 401/403, 404, 501, nor a bug."""
    status = http_status(err)
    if status is not None:
        return status in TRANSIENT_STATUS
    return isinstance(err, OSError)  # refused, reset, timed out (TimeoutError and requests' errors are OSErrors)


_RETRIED = re.compile(r"API request to (?P<url>\S+) failed with exception .*?Max retries exceeded.*\(Caused by "
                      r"(?P<cause>.*)\)$")


def describe(err: BaseException) -> str:
    """One line: the error's type, MLflow code or status, and first line (of MLflow's "The following failures
    occurred while downloading one or more artifacts ...", the first failure's)."""
    code = getattr(err, "error_code", None) or http_status(err)
    lines = [line for line in str(err).strip().splitlines() if line.strip()] or [""]
    files = [i for i, line in enumerate(lines[:-1]) if line.startswith("##### File ")]
    first = f"download failed: {lines[files[0] + 1]}" if files else lines[0]
    retried = _RETRIED.search(first)  # the cause, not urllib3's pool and the URL again
    first = (f"{first[:retried.start()]}API request to {retried['url']} failed: {retried['cause']}" if retried
             else first)[:300]
    return f"{type(err).__name__}{f' ({code})' if code else ''}: {first}"


def read_or_none(what: str, call):
    """call(), or None if MLflow says it does not exist; TrackingUnavailable for any other MLflow error, or
    HTTP or connection error (the artifact store's client raises requests' own)."""
    try:
        return call()
    except (MlflowException, OSError) as err:
        if absent(err):
            return None
        raise TrackingUnavailable(f"could not read {what} from the tracking store: {describe(err)}") from err


@contextmanager
def failures_stop(what: str):
    """For a command that must stop in one line: any MLflow error in the block becomes TrackingUnavailable
    ("{what}: ..."). Absent things are answered before (read_or_none); what is left is a failure."""
    try:
        yield
    except MlflowException as err:
        raise TrackingUnavailable(f"{what}: {describe(err)}") from err
