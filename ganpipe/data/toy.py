"""2-D mixtures of Gaussians: the ring and grid of VEEGAN / PacGAN."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ganpipe.data.base import Dataset


@dataclass(frozen=True)
class GaussianMixture2D(Dataset):
    """Equal-weight isotropic Gaussians at `centers` (M, 2) with standard deviation `std`."""

    centers: torch.Tensor = field(default=None, repr=False, compare=False)
    std: float = 0.02

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.centers), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.centers[idx] + noise


def ring8() -> GaussianMixture2D:
    """8 Gaussians on a circle of radius 2, std 0.02."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centers = torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], dim=1).float()
    return GaussianMixture2D("ring8", "points", (2,), 8, centers=centers, std=0.02)


def grid25() -> GaussianMixture2D:
    """25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05."""
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    centers = torch.cartesian_prod(axis, axis)
    return GaussianMixture2D("grid25", "points", (2,), 25, centers=centers, std=0.05)
