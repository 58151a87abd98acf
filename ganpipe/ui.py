"""`ganpipe ui`: the MLflow UI for a tracking store, bound to loopback unless told otherwise."""
from __future__ import annotations

import os
import subprocess
import sys

from ganpipe import tracking


def run_ui(uri: str | None, host: str, port: int) -> int:
    uri = tracking.resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        print(f"{uri} is a tracking server: open it in a browser, it serves the UI itself")
        return 0
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # 2 processes instead of 9
    print(f"MLflow UI for {uri} at http://{host}:{port} (runs table: Experiments -> an experiment -> Runs)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
