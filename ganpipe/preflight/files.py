"""The files a sweep names, checked cheaply before anything starts (headers and listings, never a whole
dataset): data.root is there and readable as the dataset, the size fits the networks, the evaluation's
feature classifier exists and fits the data, the FID Inception weights file exists, and a conditional
GAN's data from files has class labels. Problems are collected on the Validator, as validation's are.
"""
from __future__ import annotations

from typing import Iterable

from ganpipe.config.load import Override, load_sweep
from ganpipe.config.rules import FileChecks, candidates
from ganpipe.config.schema import INCEPTION_NAMES, DataConfig, SweepConfig, TrialConfig
from ganpipe.config.space import Param
from ganpipe.config.validate import Validator

FILE_KEYS = ("data.root", "data.image_size", "data.channels", "eval.features", "eval.inception_weights")


def check_files(v: Validator, trial: TrialConfig, space: list[Param], features: bool = True) -> None:
    """Cross-key checks of the datasets read from files, for every value the sweep may pick. `features`: also
    the evaluation's feature classifier (or Inception weights). Paths must be absolute already
    (ganpipe.config.paths.absolute_paths); nothing here changes `trial` or `space`."""
    if any(p.key.startswith(("data.", "eval.features")) for p in v.problems):
        return  # the values themselves are wrong: checking files against them only adds noise
    by_path = {p.path: p for p in space}
    cands = {k: candidates(v, k, trial, by_path) for k in ("data.dataset", *FILE_KEYS)}
    if any(c is None for c in cands.values()):
        return
    from ganpipe.data.files import FILE_DATASETS, WHAT, DataRootError, probe
    from ganpipe.metrics.image_classifier import features_problem
    from ganpipe.metrics.inception import inception_problem

    seen: set[tuple[str, str]] = set()

    def problem(key: str, msg: str) -> None:
        if (key, msg) not in seen:
            seen.add((key, msg))
            v.problem(key, msg, related=("data.dataset", *FILE_KEYS))

    datasets = cands["data.dataset"]
    builtin = [d for d in datasets if d not in FILE_DATASETS]
    if builtin:
        for key in FILE_KEYS:
            if any(cands[key]):
                may = "may be" if len(datasets) > 1 else "is"
                problem(key, f"only for datasets read from files ({', '.join(FILE_DATASETS)}); "
                             f"data.dataset {may} {builtin[0]}, which is built in: leave {key} unset")
    for name in (d for d in datasets if d in FILE_DATASETS):
        for root in cands["data.root"]:
            if not root:
                problem("data.root", f"required for {name}: the folder with {WHAT[name]}")
                continue
            for size in cands["data.image_size"]:
                for channels in cands["data.channels"]:
                    try:
                        info = probe(name, root, size, channels)
                    except DataRootError as e:
                        problem(e.key, str(e))
                        continue
                    if features:
                        for feat in cands["eval.features"]:
                            msg = features_problem(name, root, size, channels, info, feat)
                            if msg:
                                problem("eval.features", msg)
    from_files = any(d in FILE_DATASETS for d in datasets)  # else eval.features was refused above: no more noise
    if features and from_files and any(f.lower() in INCEPTION_NAMES for f in cands["eval.features"] if f):
        for weights in cands["eval.inception_weights"]:
            msg = inception_problem(weights)
            if msg:
                problem("eval.inception_weights", msg)


def labelled(name: str, data: DataConfig) -> bool | None:
    """Whether dataset `name` read from `data.root` has class labels; None if its files cannot tell (check_files
    says what is wrong with them)."""
    from ganpipe.data.files import DataRootError, probe

    try:
        return probe(name, data.root, data.image_size, data.channels).n_classes > 1
    except (DataRootError, ValueError):
        return None


FILE_CHECKS = FileChecks(files=check_files, labelled=labelled)


def load_checked_sweep(path, overrides: Iterable[Override] = (), single_trial: bool = False) -> SweepConfig:
    """ganpipe.config.load_sweep with the file checks: what every command that runs a sweep loads it with.
    Raises one ConfigError listing the config's problems and the files' together (exit 2)."""
    return load_sweep(path, overrides, single_trial, file_checks=FILE_CHECKS)
