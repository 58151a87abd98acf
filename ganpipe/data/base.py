"""The interface every dataset offers to the train loop and the evaluation protocol."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dataset:
    """A source of real samples.

    name:    registry name.
    kind:    "points" (2-D toy data) or "images" (N, C, H, W) in [-1, 1].
    shape:   shape of one sample, e.g. (2,) or (1, 8, 8).
    n_modes: how many modes the mode statistics count (8, 25, 10, 1000).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    n_modes: int

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A training minibatch of n real samples, float32, drawn with `generator`."""
        raise NotImplementedError

    def eval_real(self, n: int, seed: int) -> torch.Tensor:
        """The fixed real set of the evaluation protocol: same n and seed, same tensor."""
        return self.sample(n, torch.Generator().manual_seed(seed))

    # ---- labelled data (class-conditional GANs); n_classes == 0 means unlabelled
    @property
    def n_classes(self) -> int:
        return 0

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n real samples and their (n,) int64 class labels."""
        raise ValueError(f"{self.name} has no class labels")

    def eval_real_labels(self, n: int, seed: int) -> torch.Tensor | None:
        """The labels of eval_real(n, seed), or None for unlabelled data."""
        return None
