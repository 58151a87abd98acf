"""The real side of the protocol's comparisons, computed once per process: features, Gaussian statistics,
k-NN radii and torchmetrics' FID / KID real states of a dataset's fixed real set (and the statistics of each
class of it), shared by every Evaluator of that dataset and feature space."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ganpipe.metrics.constants import K
from ganpipe.metrics.distances import RealDistances
from ganpipe.metrics.fid import gaussian_stats
from ganpipe.metrics.prdc import knn_radii


@dataclass(frozen=True)
class RealStats:
    feats: torch.Tensor  # (n_real, d)
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64
    radii: torch.Tensor  # (n_real,) k-NN radii, self excluded
    distances: RealDistances | None = None  # the whole real set's (FID, KID); per-class statistics have none

    def to(self, device: torch.device) -> "RealStats":
        if self.feats.device == device:  # the process-wide cached object itself
            return self
        return replace(self, feats=self.feats.to(device), radii=self.radii.to(device))


_REAL_CACHE: dict[tuple, RealStats] = {}
_REAL_CLASS_CACHE: dict[tuple, dict[int, RealStats]] = {}


def stats_of(feats: torch.Tensor, distances: bool = False) -> RealStats:
    """(n, d) features -> their RealStats; distances: with torchmetrics' real states too."""
    mu, sigma = gaussian_stats(feats)
    return RealStats(feats, mu, sigma, knn_radii(feats, K), RealDistances(feats) if distances else None)


def real_stats(real: torch.Tensor, extractor) -> RealStats:
    """The statistics of the real images `real` in `extractor`'s feature space (not cached)."""
    feats, _ = extractor(real.to(torch.float32))
    return stats_of(feats, distances=True)


def per_class(stats: RealStats, labels: torch.Tensor, n_classes: int) -> dict[int, RealStats]:
    """The real statistics of each class (for intra-FID and per-class coverage)."""
    return {c: stats_of(stats.feats[labels == c]) for c in range(n_classes)}


def cached_real_stats(key: tuple, real: torch.Tensor, extractor) -> RealStats:
    """real_stats, once per process per `key` (dataset, real set, seed, feature space, data)."""
    if key not in _REAL_CACHE:
        _REAL_CACHE[key] = real_stats(real, extractor)
    return _REAL_CACHE[key]


def cached_per_class(key: tuple | None, stats: RealStats, labels: torch.Tensor, n_classes: int) -> dict[int, RealStats]:
    """per_class, once per process per `key` (that of cached_real_stats)."""
    if key not in _REAL_CLASS_CACHE:
        _REAL_CLASS_CACHE[key] = per_class(stats, labels, n_classes)
    return _REAL_CLASS_CACHE[key]
