"""Paths made absolute, once, as their own step after validation (which changes nothing it checks).

Trials may run in another working directory (Ray workers), so data.root, eval.features and
eval.inception_weights are made absolute in the trial and in the search space's choices and defaults.
"""
from __future__ import annotations

from pathlib import Path

from ganpipe.config.schema import INCEPTION_NAMES, TrialConfig
from ganpipe.config.space import Param, get_path

PATH_KEYS = ("data.root", "eval.features", "eval.inception_weights")


def absolute(path: str) -> str:
    """`path` made absolute ("~" expanded); "" and the Inception names of eval.features stay as they are."""
    return str(Path(path).expanduser().absolute()) if path and path.lower() not in INCEPTION_NAMES else path


def absolute_paths(trial: TrialConfig, space: list[Param]) -> None:
    """Make the path keys absolute in `trial` and in `space`, in place."""
    for key in PATH_KEYS:
        section, name = key.split(".")
        setattr(getattr(trial, section), name, absolute(get_path(trial, key)))
        for p in space:
            if p.path == key:
                p.choices = [absolute(c) for c in p.choices or []]
                p.default = absolute(p.default) if p.default else p.default
