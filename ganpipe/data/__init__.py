"""Datasets by name. Every dataset loads offline and knows its modes.

    get_dataset("ring8").sample(256, generator)  -> (256, 2) float32
    get_dataset("digits").sample(64, generator)  -> (64, 1, 8, 8) float32 in [-1, 1]
"""
from ganpipe.data.base import Dataset
from ganpipe.data.registry import DATASETS, get_dataset

__all__ = ["DATASETS", "Dataset", "get_dataset"]
