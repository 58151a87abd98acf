"""`ganpipe server`: an MLflow tracking server for a team or a cluster.

A database backend (sqlite file or PostgreSQL) and a proxied artifact store, so
trials on any node send artifacts through the server and need no bucket
credentials. Bound to 127.0.0.1 unless --host says otherwise.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def server_command(backend_uri: str, artifacts: str, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", artifacts,
        "--serve-artifacts",
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]


def resolve_backend(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def run_server(backend_uri: str, artifacts: str, host: str, port: int, workers: int = 1) -> int:
    backend_uri = resolve_backend(backend_uri)
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).resolve())
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # 2 processes instead of 9
    cmd = server_command(backend_uri, artifacts, host, port, workers)
    print(f"MLflow server on http://{host}:{port} (backend {backend_uri}, artifacts {artifacts})", flush=True)
    print(f"sweeps use it with: ganpipe sweep SWEEP.yaml --tracking-uri http://{host}:{port}", flush=True)
    # become the server (same pid and process group): Ctrl-C or a signal to the group stops all of it
    os.execve(sys.executable, cmd, env)
