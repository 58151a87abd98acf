"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models", ICML), with chunked pairwise distances.

Every k-NN radius excludes the point itself (the (k+1)-th smallest distance, the 0 to
itself being the first), exactly as the authors' reference code. Comparisons are strict
(`<`), as there. Distances are computed in float32 chunks of about `CHUNK_BYTES`, so
10k x 10k in 64-D needs ~64 MB at a time and a few seconds on 2 cores.
"""
from __future__ import annotations

import numpy as np
import torch

CHUNK_BYTES = 64 * 2**20  # one float32 distance block, rows x cols


def _as_tensor(feats) -> torch.Tensor:
    """(N, d) array or tensor -> contiguous (N, d) float32 CPU tensor."""
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(feats)
    x = feats.detach().to("cpu", torch.float32).contiguous()
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {tuple(x.shape)}")
    return x


def _row_chunk(n_cols: int) -> int:
    return max(1, CHUNK_BYTES // (4 * max(1, n_cols)))


def knn_radii(feats, k: int = 5) -> torch.Tensor:
    """(N, d) -> (N,) distance from each point to its k-th nearest other point (self excluded)."""
    x = _as_tensor(feats)
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in [1, N-1] = [1, {len(x) - 1}], got {k}")
    out = torch.empty(len(x))
    step = _row_chunk(len(x))
    for i in range(0, len(x), step):
        d = torch.cdist(x[i : i + step], x)  # (chunk, N)
        out[i : i + step] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def prdc(real_feats, fake_feats, k: int = 5, real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density, coverage of fake (M, d) against real (N, d).

    precision: fraction of fakes inside some real k-NN ball (fidelity).
    recall:    fraction of reals inside some fake k-NN ball (diversity).
    density:   mean number of real balls containing a fake, / k (fidelity, ~1 when matched).
    coverage:  fraction of reals whose k-NN ball contains at least one fake (diversity).
    real_radii: (N,) cached `knn_radii(real_feats, k)`, to skip the real x real pass.
    """
    real, fake = _as_tensor(real_feats), _as_tensor(fake_feats)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, fake {fake.shape[1]}")
    r_rad = knn_radii(real, k) if real_radii is None else real_radii.to(torch.float32)
    f_rad = knn_radii(fake, k)

    in_real_ball = 0  # fakes inside >= 1 real ball
    n_real_balls = 0  # sum over fakes of how many real balls contain it
    covered = torch.zeros(len(real), dtype=torch.bool)  # per real: its ball holds some fake
    recalled = torch.zeros(len(real), dtype=torch.bool)  # per real: inside some fake ball
    step = _row_chunk(len(real))
    for j in range(0, len(fake), step):
        d = torch.cdist(fake[j : j + step], real)  # (chunk, N)
        inside = d < r_rad[None, :]  # fake j in real i's ball
        in_real_ball += int(inside.any(dim=1).sum())
        n_real_balls += int(torch.count_nonzero(inside))  # far faster than bool .sum()
        covered |= inside.any(dim=0)
        recalled |= (d < f_rad[j : j + step, None]).any(dim=0)
    return {
        "precision": in_real_ball / len(fake),
        "recall": int(recalled.sum()) / len(real),
        "density": n_real_balls / (k * len(fake)),
        "coverage": int(covered.sum()) / len(real),
    }


def coverage(real_feats, fake_feats, k: int = 5, real_radii: torch.Tensor | None = None) -> float:
    """Fraction of real points (N, d) whose k-NN ball (self excluded) holds at least one fake (M, d)."""
    real, fake = _as_tensor(real_feats), _as_tensor(fake_feats)
    r_rad = knn_radii(real, k) if real_radii is None else real_radii.to(torch.float32)
    covered = torch.zeros(len(real), dtype=torch.bool)
    step = _row_chunk(len(real))
    for j in range(0, len(fake), step):
        covered |= (torch.cdist(fake[j : j + step], real) < r_rad[None, :]).any(dim=0)
    return int(covered.sum()) / len(real)
