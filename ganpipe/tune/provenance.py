"""Tags that say exactly what a sweep ran: config hash, git commit, versions."""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

from ganpipe.config.schema import SweepConfig


def config_hash(sweep: SweepConfig) -> str:
    """sha256 of the resolved sweep (fixed values and space), independent of YAML formatting."""
    data = {k: v for k, v in asdict(sweep).items() if k != "source"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit(start: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sweep_tags(sweep: SweepConfig, yaml_text: str, exp_dir: Path) -> dict[str, str]:
    import optuna
    import ray
    import torch

    import ganpipe

    source = Path(sweep.source).resolve().parent if sweep.source else Path.cwd()
    return {
        "ganpipe.kind": "sweep",
        "ganpipe.sweep": sweep.name,
        "ganpipe.config_hash": config_hash(sweep),
        "ganpipe.experiment_dir": str(exp_dir),
        "ganpipe.version": ganpipe.__version__,
        "mlflow.source.git.commit": git_commit(source),
        "versions": f"torch {torch.__version__}, ray {ray.__version__}, optuna {optuna.__version__}",
    }
