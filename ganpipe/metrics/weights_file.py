"""The one file format of the feature classifiers' weights (digits, styled digits, classifiers of files):

    {**metadata, "sha256": weights_sha256(state_dict), "state_dict": state_dict}     read by torch.load(weights_only=True)

metadata holds at least "arch_version"; the sha256 covers the tensors (names, dtypes, shapes, bytes), not the
file, and is what an evaluation protocol records of its feature space.

    sha = save_weights(path, state_dict, metadata)      # written beside it, then renamed into place
    ckpt = read_weights(path, ARCH_VERSION)             # ValueError unless the architecture and sha256 match
    load = cached_loader(read, build)                   # (path, mtime_ns) -> model in eval mode with .metadata
    model = load_cached(load, path)
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in sorted key order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict as detached CPU copies."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict) -> str:
    """Write metadata, the weights' sha256 and the weights to `path` atomically (a reader sees the old file or
    the new one, never half of one); return the sha256."""
    sha = weights_sha256(state_dict)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh folder beside it: same file system (os.replace is atomic), and the file keeps its name inside the
    # zip archive torch writes (the shipped files' layout)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        torch.save({**metadata, "sha256": sha, "state_dict": state_dict}, tmp / path.name)
        os.replace(tmp / path.name, path)
    finally:
        (tmp / path.name).unlink(missing_ok=True)
        tmp.rmdir()
    return sha


def verify(ckpt: dict, path: str | Path = "weights") -> None:
    """Raise ValueError unless the weights match their recorded sha256."""
    if weights_sha256(ckpt["state_dict"]) != ckpt.get("sha256"):
        raise ValueError(f"{path}: weights do not match their recorded sha256 (corrupted file?)")


def read_weights(path: str | Path, arch_version: str, hint: str = "") -> dict:
    """The file's dict (metadata and state_dict), checked: a file torch cannot read, of another architecture,
    or whose weights do not match their sha256 raises ValueError (`hint` ends the architecture message)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a file torch cannot read is not a classifier file
        # torch's own message runs over several lines and suggests weights_only=False: the class names enough
        raise ValueError(f"{path} is not a feature classifier file (torch.load: {type(e).__name__})")
    if not isinstance(ckpt, dict) or ckpt.get("arch_version") != arch_version:
        got = ckpt.get("arch_version") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: architecture {got!r}, expected {arch_version!r}{hint}")
    verify(ckpt, path)
    return ckpt


def cached_loader(read: Callable[[str], dict], build: Callable[[dict], nn.Module], maxsize: int = 4):
    """An lru-cached (path, mtime_ns) -> model: `read(path)` the checked file, `build(ckpt)` the empty model;
    the model gets the weights, eval mode, no grad, and `.metadata` (the file's dict but the weights).
    A rewritten file (another mtime) is read again; `.cache_clear()` forgets every model."""

    @lru_cache(maxsize=maxsize)
    def load(path: str, mtime_ns: int) -> nn.Module:
        ckpt = read(path)
        model = build(ckpt)
        model.load_state_dict(ckpt["state_dict"])
        model.metadata = {k: v for k, v in ckpt.items() if k != "state_dict"}  # type: ignore[attr-defined]
        return model.eval().requires_grad_(False)

    return load


def load_cached(loader, path: str | Path) -> nn.Module:
    """`loader` (a cached_loader) of the resolved path and its current mtime."""
    p = Path(path).expanduser().resolve()
    return loader(str(p), p.stat().st_mtime_ns)
