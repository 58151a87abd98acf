"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models", ICML), with chunked pairwise distances.

Every k-NN radius excludes the point itself (the (k+1)-th smallest distance, the 0 to
itself being the first), exactly as the authors' reference code. Comparisons are strict
(`<`), as there. Squared distances are computed in float32 chunks of about `CHUNK_BYTES`, so
10k x 10k in 64-D needs ~16 MB at a time and a few seconds on 2 cores.
"""
from __future__ import annotations

import numpy as np
import torch

CHUNK_BYTES = 16 * 2**20  # one float32 distance block (rows x cols); ~cache-sized blocks run faster


def _as_tensor(feats, device: torch.device | None = None) -> torch.Tensor:
    """(N, d) array or tensor -> contiguous (N, d) float32 tensor on `device` (None: a tensor's own, numpy's CPU)."""
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(feats)
    x = feats.detach().to(device or feats.device, torch.float32).contiguous()
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {tuple(x.shape)}")
    return x


def _row_chunk(n_cols: int) -> int:
    return max(1, CHUNK_BYTES // (4 * max(1, n_cols)))


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


def _sq_dists(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) squared distances |a|^2 - 2ab + |b|^2 (one matmul, the same
    expansion torch.cdist uses for large inputs, minus its sqrt); clamped at 0."""
    return torch.addmm(b_sq[None, :], a, b.T, alpha=-2.0).add_(a_sq[:, None]).clamp_min_(0.0)


def knn_radii(feats, k: int = 5) -> torch.Tensor:
    """(N, d) -> (N,) distance from each point to its k-th nearest other point (self excluded)."""
    x = _as_tensor(feats)
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in [1, N-1] = [1, {len(x) - 1}], got {k}")
    out = torch.empty(len(x), device=x.device)
    x_sq = _sq_norms(x)
    step = _row_chunk(len(x))
    for i in range(0, len(x), step):
        d2 = _sq_dists(x[i : i + step], x_sq[i : i + step], x, x_sq)  # (chunk, N)
        out[i : i + step] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return out.sqrt_()


def prdc(real_feats, fake_feats, k: int = 5, real_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density, coverage of fake (M, d) against real (N, d).

    precision: fraction of fakes inside some real k-NN ball (fidelity).
    recall:    fraction of reals inside some fake k-NN ball (diversity).
    density:   mean number of real balls containing a fake, / k (fidelity, ~1 when matched).
    coverage:  fraction of reals whose k-NN ball contains at least one fake (diversity).
    real_radii: (N,) cached `knn_radii(real_feats, k)`, to skip the real x real pass.
    Computed where the fakes lie (e.g. a GPU); the reals are moved there.
    """
    fake = _as_tensor(fake_feats)
    real = _as_tensor(real_feats, fake.device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, fake {fake.shape[1]}")
    r_rad = knn_radii(real, k) if real_radii is None else real_radii.to(fake.device, torch.float32)
    f_rad = knn_radii(fake, k)

    in_real_ball = 0  # fakes inside >= 1 real ball
    n_real_balls = 0  # sum over fakes of how many real balls contain it
    covered = torch.zeros(len(real), dtype=torch.bool, device=fake.device)  # per real: its ball holds some fake
    recalled = torch.zeros(len(real), dtype=torch.bool, device=fake.device)  # per real: inside some fake ball
    r_rad2, f_rad2 = r_rad.square(), f_rad.square()  # compare squared distances: no sqrt
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    step = _row_chunk(len(real))
    for j in range(0, len(fake), step):
        d2 = _sq_dists(fake[j : j + step], fake_sq[j : j + step], real, real_sq)  # (chunk, N)
        inside = d2 < r_rad2[None, :]  # fake j in real i's ball
        in_real_ball += int(inside.any(dim=1).sum())
        n_real_balls += int(torch.count_nonzero(inside))  # far faster than bool .sum()
        covered |= inside.any(dim=0)
        recalled |= (d2 < f_rad2[j : j + step, None]).any(dim=0)
    return {
        "precision": in_real_ball / len(fake),
        "recall": int(recalled.sum()) / len(real),
        "density": n_real_balls / (k * len(fake)),
        "coverage": int(covered.sum()) / len(real),
    }


def coverage(real_feats, fake_feats, k: int = 5, real_radii: torch.Tensor | None = None) -> float:
    """Fraction of real points (N, d) whose k-NN ball (self excluded) holds at least one fake (M, d)."""
    fake = _as_tensor(fake_feats)
    real = _as_tensor(real_feats, fake.device)
    r_rad = knn_radii(real, k) if real_radii is None else real_radii.to(fake.device, torch.float32)
    r_rad2, real_sq, fake_sq = r_rad.square(), _sq_norms(real), _sq_norms(fake)
    covered = torch.zeros(len(real), dtype=torch.bool, device=fake.device)
    step = _row_chunk(len(real))
    for j in range(0, len(fake), step):
        d2 = _sq_dists(fake[j : j + step], fake_sq[j : j + step], real, real_sq)
        covered |= (d2 < r_rad2[None, :]).any(dim=0)
    return int(covered.sum()) / len(real)
