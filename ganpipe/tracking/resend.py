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

import random
import time
from typing import Callable, TypeVar

from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
)
from mlflow.exceptions import MlflowException
from mlflow.version import VERSION
from packaging.version import Version

from ganpipe.tracking.errors import transient

T = TypeVar("T")
BACKOFF_MAX = 120.0  # urllib3's Retry.DEFAULT_BACKOFF_MAX, which caps MLflow's own waits too
MLFLOW_RESENDS_CREATES = Version(VERSION).release < (3, 18)  # its HTTP client sent every request again before 3.18


def resend_delays() -> list[float]:
    """Seconds to wait before each resend, as urllib3 spaces MLflow's retries (none where MLflow resends)."""
    if MLFLOW_RESENDS_CREATES:
        return []
    factor, jitter = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    return [0.0 if n == 1 else min(BACKOFF_MAX, factor * 2 ** (n - 1) + random.uniform(0, jitter))
            for n in range(1, MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() + 1)]


def create_once(create: Callable[[], T], find: Callable[[], T | None]) -> T:
    """create(), or what find() returns once a create has failed on the way back. A transient failure
    (errors.transient) is followed by find(); if it finds nothing the create is sent again, up to
    MLFLOW_HTTP_REQUEST_MAX_RETRIES times; then the last failure is raised. Any other error is raised at once."""
    delays = resend_delays()
    for attempt in range(len(delays) + 1):
        try:
            return create()
        except (MlflowException, OSError) as err:
            if not transient(err):
                raise
            failure = err
        made = find()
        if made is not None:
            return made
        if attempt < len(delays):
            time.sleep(delays[attempt])
    raise failure
