"""Dataset registry: name -> factory. An unknown name lists the valid ones."""
from __future__ import annotations

from typing import Callable

from ganpipe.data.base import Dataset
from ganpipe.data.digits import digits, stacked_digits
from ganpipe.data.toy import grid25, ring8

DATASETS: dict[str, Callable[[], Dataset]] = {
    "ring8": ring8,
    "grid25": grid25,
    "digits": digits,
    "stacked-digits": stacked_digits,
}


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]()
