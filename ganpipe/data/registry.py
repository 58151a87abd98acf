"""Dataset registry: name -> factory. An unknown name lists the valid ones.

    get_dataset("ring8")                                       # built-in: a name is enough
    get_dataset(DataConfig("mnist", root="/data/mnist", image_size=32))   # read from files
"""
from __future__ import annotations

from typing import Callable

from ganpipe.config.schema import TRANSLATION_DATASETS, DataConfig  # noqa: F401 (the trainer factory reads it here)
from ganpipe.data.base import Dataset
from ganpipe.data.digits import digits, stacked_digits
from ganpipe.data.files import FILE_DATASETS, image_files
from ganpipe.data.toy import grid25, ring8
from ganpipe.data.translation import digits_translation

BUILTIN = {"ring8": ring8, "grid25": grid25, "digits": digits, "stacked-digits": stacked_digits,
           "digits-translation": digits_translation}
# image-to-image tasks (TRANSLATION_DATASETS, kind "translation") are trained by the CycleGAN trainer

# every factory takes the DataConfig; the built-in ones ignore it (validation keeps root etc. empty)
DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    **{name: (lambda cfg, f=f: f()) for name, f in BUILTIN.items()},
    **{name: (lambda cfg: image_files(cfg.dataset, cfg.root, cfg.image_size, cfg.channels))
       for name in FILE_DATASETS},
}


def get_dataset(spec: str | DataConfig) -> Dataset:
    """A dataset from its registry name (built-in ones) or a DataConfig (any, root for files)."""
    cfg = DataConfig(dataset=spec) if isinstance(spec, str) else spec
    if cfg.dataset not in DATASETS:
        raise KeyError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if cfg.dataset in BUILTIN and (cfg.root or cfg.image_size or cfg.channels):
        raise ValueError(f"{cfg.dataset} is built in: data.root, data.image_size and data.channels must stay unset")
    if cfg.dataset in FILE_DATASETS and not cfg.root:
        raise ValueError(f"{cfg.dataset} is read from files: give data.root (the folder that holds them)")
    return DATASETS[cfg.dataset](cfg)
