"""Creates whose answer was lost: looked for, then sent again, so each is made once.

MLflow's HTTP client retries 408, 429, 5xx and connection errors, but since MLflow 3.18 not for a POST that is
unsafe to repeat (creating a run, an experiment, a registered model or a model version): those it retries only
on 408 and 429, and never once the request may have reached the server (a gateway's 504, a dropped connection),
because the server may have made the thing before the answer was lost. Earlier versions sent the create again
and made two (hence the clean-ups in runs.create_run_once and registry.one_version, kept for them).

`create_once` does what MLflow leaves to its caller: after a transient failure it looks for what it asked for
(a read, which MLflow's client still retries), returns it if the server made it, and otherwise sends the create
again, on MLflow's own schedule for the requests it does retry (MLFLOW_HTTP_REQUEST_MAX_RETRIES resends,
urllib3's backoff: 0 s, then MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR × 2^(n-1) s plus up to
MLFLOW_HTTP_REQUEST_BACKOFF_JITTER s). With an MLflow that still resends creates itself (the Docker images pin
3.17.2) it only looks: resending there too would multiply the two schedules (8 × ~4 min against a dead server).
"""
from __future__ import annotations

from typing import Callable, TypeVar

from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
)
from mlflow.exceptions import MlflowException
from mlflow.version import VERSION
from packaging.version import Version
from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from ganpipe.tracking.errors import transient

T = TypeVar("T")
MLFLOW_RESENDS_CREATES = Version(VERSION).release < (3, 18)  # its HTTP client sent every request again before 3.18


def resends() -> Retry:
    """The resends left, as urllib3's Retry that MLflow's client builds from the same settings (none where
    MLflow resends creates itself)."""
    return Retry(total=0 if MLFLOW_RESENDS_CREATES else MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(),
                 backoff_factor=MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
                 backoff_jitter=MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get())


def create_once(create: Callable[[], T], find: Callable[[], T | None]) -> T:
    """create(), or what find() returns once a create has failed on the way back. A transient failure
    (errors.transient) is followed by find(); if it finds nothing the create is sent again, up to
    MLFLOW_HTTP_REQUEST_MAX_RETRIES times; then the last failure is raised. Any other error is raised at once."""
    retry = resends()
    while True:
        try:
            return create()
        except (MlflowException, OSError) as err:
            if not transient(err):
                raise
            failure = err
        made = find()
        if made is not None:
            return made
        try:
            retry = retry.increment()
        except MaxRetryError:
            raise failure from None
        retry.sleep()  # urllib3's backoff: 0 s, then factor × 2^(n-1) s plus jitter, at most 120 s
