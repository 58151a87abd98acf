"""scikit-learn's bundled 8x8 digits (no download) and the Stacked-MNIST protocol on them."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch

from ganpipe.data.base import Dataset


@lru_cache(maxsize=1)
def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ((1797, 1, 8, 8) float32 in [-1, 1], (1797,) int64 labels)."""
    from sklearn.datasets import load_digits  # ships inside scikit-learn: offline

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    images = images / 8.0 - 1.0  # pixel values are 0..16
    return images, torch.tensor(bunch.target, dtype=torch.int64)


@dataclass(frozen=True)
class Digits(Dataset):
    """Uniform draws (with replacement) from the 1797 digits; labels give the 10 modes."""

    images: torch.Tensor = field(default=None, repr=False, compare=False)
    labels: torch.Tensor = field(default=None, repr=False, compare=False)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.images[torch.randint(len(self.images), (n,), generator=generator)]

    def eval_real(self, n: int, seed: int) -> torch.Tensor:
        # The real side of the protocol is the whole dataset, as FID on a training set usually is.
        return self.images

    @property
    def n_classes(self) -> int:
        return 10

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.images), (n,), generator=generator)
        return self.images[idx], self.labels[idx]

    def eval_real_labels(self, n: int, seed: int) -> torch.Tensor:
        return self.labels


@dataclass(frozen=True)
class StackedDigits(Digits):
    """Stacked-MNIST on digits: each of the 3 channels an independent random digit (1000 modes)."""

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n, 3), generator=generator)
        return self.images[idx].squeeze(2)  # (n, 3, 1, 8, 8) -> (n, 3, 8, 8)

    def eval_real(self, n: int, seed: int) -> torch.Tensor:
        return Dataset.eval_real(self, n, seed)

    # a sample's label would be a triple of digits (its mode), not a class to condition on
    n_classes = Dataset.n_classes
    sample_labelled = Dataset.sample_labelled
    eval_real_labels = Dataset.eval_real_labels


def digits() -> Digits:
    images, labels = load_digits_tensors()
    return Digits("digits", "images", (1, 8, 8), 10, images=images, labels=labels)


def stacked_digits() -> StackedDigits:
    images, labels = load_digits_tensors()
    return StackedDigits("stacked-digits", "images", (3, 8, 8), 1000, images=images, labels=labels)
