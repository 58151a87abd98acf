"""`ganpipe features train DATASET [--set data.KEY=VALUE ...] [--out PATH]`: (re)build the
feature classifier of a dataset's evaluation protocol.

    digits                                   the shipped 8x8 digits classifier (package data)
    digits-translation                       the shipped styled-digits classifier (package data)
    mnist, fashion-mnist, cifar10,           a small CNN on the data under --set data.root=DIR
    image-folder (with class sub-folders)    (--set data.image_size / data.channels as the sweep has
                                             them); saved to the default location the evaluation
                                             looks in, or --out FILE for eval.features
"""
from __future__ import annotations

from pathlib import Path

from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.schema import DataConfig
from ganpipe.data.files import FILE_DATASETS
from ganpipe.metrics import digits_classifier as dc

# stacked-digits needs no extractor of its own: it applies the digits classifier per channel.
TRAINABLE = ("digits", "digits-translation", *FILE_DATASETS)


def data_config(dataset: str, overrides: list[str]) -> DataConfig:
    """The DataConfig of `features train DATASET --set data.k=v ...`, checked like a sweep's
    (the root is probed); raises ConfigError."""
    from ganpipe.config.load import apply_overrides
    from ganpipe.config.paths import absolute_paths
    from ganpipe.config.schema import TrialConfig
    from ganpipe.config.validate import Validator
    from ganpipe.preflight.files import check_files

    problems: list[Problem] = []
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("data.") or key == "data.dataset":
            problems.append(Problem("--set", key, "features train takes data.root, data.image_size and data.channels only"))
    if problems:
        raise ConfigError(problems)
    raw = {"data": {"dataset": dataset}}
    overridden = apply_overrides(raw, overrides, problems)
    v = Validator("--set", overridden)
    v.problems = problems
    trial = TrialConfig(data=v.section(DataConfig, raw["data"], "data", False, []))
    absolute_paths(trial, [])
    check_files(v, trial, [], features=False)
    if problems:
        raise ConfigError(problems)
    return trial.data


def train_features(data: str | DataConfig, out: str | None = None, *, seed: int | None = None,
                   epochs: int | None = None, device: str = "cpu", log=None) -> dict:
    """Train the feature classifier for a dataset, save it and return {"path", "heldout_accuracy",
    "sha256", ...}. `digits` (a name) rebuilds the shipped file unless `out`; a dataset read
    from files needs a DataConfig with its root and is saved to `out` or the default location."""
    cfg = DataConfig(dataset=data) if isinstance(data, str) else data
    if cfg.dataset not in TRAINABLE:
        raise ValueError(f"no trainable feature extractor for dataset {cfg.dataset!r}; valid: {', '.join(TRAINABLE)}")
    if cfg.dataset == "digits":
        path = Path(out) if out else dc.WEIGHTS_PATH
        s = dc.DEFAULT_SEED if seed is None else seed
        model, acc = dc.train_digits_classifier(seed=s)
        sha = dc.save_digits_classifier(model, path, seed=s, heldout_accuracy=acc)
        dc._load_cached.cache_clear()  # a later load in this process must see the new file
        return {"path": str(path.resolve()), "heldout_accuracy": acc, "sha256": sha}
    if cfg.dataset == "digits-translation":
        from ganpipe.metrics import styled_classifier as sc

        path = Path(out) if out else sc.WEIGHTS_PATH
        model, meta = sc.train_styled_classifier(seed=sc.DEFAULT_SEED if seed is None else seed,
                                                 epochs=epochs or sc.DEFAULT_EPOCHS, log=log)
        sha = sc.save_styled_classifier(model, meta, path)
        sc._load_cached.cache_clear()
        return {**meta, "path": str(path.resolve()), "sha256": sha}
    if not cfg.root:
        raise ValueError(f"{cfg.dataset!r} is read from files: give its folder (ganpipe features train {cfg.dataset} "
                         "--set data.root=DIR); by name alone, valid: digits")
    from ganpipe.data import get_dataset
    from ganpipe.metrics import image_classifier as ic

    dataset = get_dataset(cfg)
    return ic.train_and_save(dataset, out, ic.DEFAULT_SEED if seed is None else seed, epochs, device, log)
