"""Fréchet distance between Gaussians fitted to two feature sets, in float64.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

The trace of the matrix square root uses the eigenvalue form: with A = S1^(1/2)
(symmetric, via eigh), A S2 A is symmetric PSD and similar to S1 S2, so
tr sqrt(S1 S2) = sum sqrt(eigvalsh(A S2 A)). Unlike `eigvals(S1 S2)` (non-symmetric,
complex round-off) or `scipy.linalg.sqrtm` (slow, unstable on near-singular
covariances), this never returns complex values. Eigenvalues below the numerical-rank
tolerance (numpy.linalg.matrix_rank's: d * eps * the largest) are round-off of exact
zeros and count as 0: a singular covariance (the dead ReLU units of a classifier's
features) would otherwise add sqrt(1e-13) ~ 3e-7 per null direction, 1e-5 relative on
digits. The Evaluator computes FID through torchmetrics (ganpipe.metrics.distances); this
is the reference it is tested against, and what per-class FIDs use.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_float64(feats) -> np.ndarray:
    """(N, d) array or tensor -> (N, d) float64 numpy array (CPU copy for tensors)."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"features must be 2-D (N, d), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to fit a covariance, got {arr.shape[0]}")
    return arr


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) features -> (mu (d,), sigma (d, d)), float64, unbiased covariance (N - 1)."""
    x = _as_float64(feats)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def _above_rank_tolerance(w: np.ndarray) -> np.ndarray:
    """Mask of the eigenvalues w (d,) of a symmetric PSD matrix that are not round-off of an exact 0."""
    return w > len(w) * np.finfo(np.float64).eps * max(float(w.max()), 0.0)


def _sym_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root of a (d, d) covariance; round-off and negative eigenvalues -> 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    keep = _above_rank_tolerance(w)
    return (v[:, keep] * np.sqrt(w[keep])) @ v[:, keep].T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 @ sigma2) via eigvalsh(A sigma2 A), A = sigma1^(1/2); never on sigma1 @ sigma2."""
    a = _sym_sqrt(np.asarray(sigma1, dtype=np.float64))
    m = a @ np.asarray(sigma2, dtype=np.float64) @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(eig[_above_rank_tolerance(eig)]).sum())


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); mu (d,), sigma (d, d)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance(real_feats, fake_feats) -> float:
    """FID-style distance between two (N, d) feature sets (numpy arrays or torch tensors)."""
    mu1, s1 = gaussian_stats(real_feats)
    mu2, s2 = gaussian_stats(fake_feats)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)
