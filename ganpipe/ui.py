"""`ganpipe ui`: the MLflow UI for a tracking store, bound to loopback unless told otherwise."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from ganpipe import tracking
from ganpipe.config.errors import ConfigError, Problem


def check_ui_inputs(cli_uri: str | None, uri: str, host: str, port: int) -> list[Problem]:
    """What would make the UI fail after it started (or show an empty store it just created)."""
    source = tracking.uri_source(cli_uri)
    if not 1 <= port <= 65535:
        return [Problem("--port", "port", f"must be in 1..65535, got {port}")]
    why = tracking.check_reachable(uri)
    if why:
        return [Problem(source, "tracking.uri", why)]
    if tracking.store_missing(uri):  # MLflow would create an empty store and show it
        return [Problem(source, "tracking.uri", f"the tracking store {uri} does not exist (nothing tracked there yet)")]
    if uri.startswith(("http://", "https://")):
        return []
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):  # free now; the UI binds it a moment later
            pass
    except OSError as err:
        return [Problem("--port", "port", f"cannot listen on {host}:{port} ({err.strerror or err}); "
                                          "is another UI or server there? choose another --port")]
    return []


def run_ui(cli_uri: str | None, host: str, port: int) -> int:
    uri = tracking.resolve_uri(cli_uri)
    problems = check_ui_inputs(cli_uri, uri, host, port)
    if problems:
        raise ConfigError(problems)
    if uri.startswith(("http://", "https://")):
        print(f"{uri} is a tracking server: open it in a browser, it serves the UI itself")
        print(trial_links(uri, uri.rstrip("/")))
        return 0
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # 2 processes instead of 9
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(f"MLflow UI for {uri} at {address}")
    print(trial_links(uri, address), flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def trial_links(uri: str, address: str) -> str:
    """One link per sweep experiment (the latest first): its trials, best objective first, with the best
    checkpoint's objective, fid, diversity and modes and the searched parameters as columns."""
    found = tracking.experiments_with_view(tracking.client(uri))
    if not found:
        return ("no sweep experiments yet; after a sweep: Experiments -> the sweep -> Training runs "
                "(the trials are nested under the sweep's run)")
    width = max(len(name) for name, _ in found)
    return "\n".join(["trials of each sweep, best first:"]
                     + [f"  {name:<{width}}  {address}{tracking.trials_view_path(eid)}" for name, eid in found]
                     + [f"  models (aliases champion, challenger): {address}/#/models"])
