"""One checkpoint file: resolved config, step, G, D, EMA, optimizers, RNG states, protocol.

Stored with plain containers and tensors only, so `torch.load(weights_only=True)`
reads it: no pickled code runs when someone opens a checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpipe.config import trial_from_dict, trial_to_dict
from ganpipe.config.schema import TrialConfig

FORMAT_VERSION = 1
FILENAME = "checkpoint.pt"


def _portable_rng(rng: dict) -> dict:
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    return {**rng, "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached]}


def _restore_rng(rng: dict) -> dict:
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    python = rng["python"]
    python = (python[0], tuple(python[1]), python[2])
    return {**rng, "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached), "python": python}


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint is a file; a directory stands for the file inside it (Ray Tune checkpoints)."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def save_checkpoint(path: str | Path, cfg: TrialConfig, state: dict, protocol: dict) -> Path:
    path = checkpoint_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": trial_to_dict(cfg),
        "protocol": protocol,
        **state,
        "rng": _portable_rng(state["rng"]),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def read_checkpoint(path: str | Path) -> dict:
    payload = torch.load(checkpoint_file(path), map_location="cpu", weights_only=True)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {payload.get('format_version')!r}, expected {FORMAT_VERSION}")
    return payload


def load_checkpoint(path: str | Path) -> tuple[TrialConfig, dict]:
    """(resolved config, trainer state) of a checkpoint."""
    payload = read_checkpoint(path)
    state = {k: payload[k] for k in ("step", "best", "g", "d", "ema", "opt_g", "opt_d")}
    state["rng"] = _restore_rng(payload["rng"])
    return trial_from_dict(payload["config"]), state
