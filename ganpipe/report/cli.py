"""`ganpipe report EXPERIMENT_OR_PARENT_RUN [-o DIR] [--tracking-uri URI]`: checks its input (exit 2, one
line naming the option), then writes the page."""
from __future__ import annotations

import sys
from pathlib import Path

from ganpipe import tracking
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.report.data import TARGET, find_target


def run_report(target: str, out: str | None, tracking_uri: str | None) -> int:
    uri = tracking.resolve_uri(tracking_uri)
    why = tracking.check_reachable(uri)
    if why:
        raise ConfigError([Problem("--tracking-uri", "tracking.uri", why)])
    if tracking.store_missing(uri):
        raise ConfigError([Problem(TARGET, "experiment", f"no MLflow run or experiment {target!r}: the tracking "
                                   f"store {uri} does not exist (--tracking-uri, $MLFLOW_TRACKING_URI)")])
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError([Problem("-o", "out", f"{out} is a file: give a folder (new, or one to write into)")])
    from ganpipe.report import build

    try:
        with tracking.failures_stop(f"tracking store {uri}"):
            parent = find_target(tracking.client(uri), target)  # ConfigError: no such experiment or run
            folder = Path(out or f"report-{parent.info.run_name}")
            index = build(uri, parent, folder)
    except tracking.TrackingUnavailable as err:
        print(f"report stopped: {err}", file=sys.stderr)
        return 1
    print(f"wrote {index} (open it in a browser; the PNGs are beside it)")
    return 0
