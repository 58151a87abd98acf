"""Mode statistics: how many modes a generator hits and how evenly (VEEGAN / PacGAN protocol).

KL(q || uniform) = sum_i q_i log(q_i * M) uses q_i log(q_i + KL_EPS): the epsilon only keeps
log finite for empty modes (their term is 0 anyway), so the value is exact to ~1e-12.
With no usable samples at all (q undefined) KL is log(M), the value of a single-mode
histogram: the worst a histogram can score, and never NaN (NaN means divergence upstream).
"""
from __future__ import annotations

import math

import numpy as np
import torch

KL_EPS = 1e-12
COVER_FRACTION = 0.008  # a point mode needs round(0.008 N) high-quality samples: 20 of 2500
HQ_STDS = 3.0  # high quality = within 3 std of the nearest center


def kl_to_uniform(counts: np.ndarray) -> float:
    """(M,) histogram counts -> KL(q || uniform over M) in nats, q = counts / counts.sum()."""
    counts = np.asarray(counts, dtype=np.float64)
    m, total = len(counts), counts.sum()
    if total <= 0:
        return math.log(m)
    q = counts / total
    return float(np.sum(q * (np.log(q + KL_EPS) + math.log(m))))


def point_mode_stats(samples, centers, std: float) -> dict[str, float | int]:
    """Mode statistics of 2-D samples (N, 2) against mixture centers (M, 2) with std `std`.

    modes:        count of modes with >= max(1, round(0.008 N)) high-quality samples.
    high_quality: fraction of samples within 3 std of their nearest center.
    kl:           KL(q || uniform) of the high-quality samples' mode histogram q.
    """
    x = torch.as_tensor(samples).detach().to("cpu", torch.float64)
    c = torch.as_tensor(centers).detach().to("cpu", torch.float64)
    dist, nearest = torch.cdist(x, c).min(dim=1)  # (N,), (N,)
    hq = dist <= HQ_STDS * std
    counts = torch.bincount(nearest[hq], minlength=len(c)).numpy()
    threshold = max(1, round(COVER_FRACTION * len(x)))
    return {
        "modes": int((counts >= threshold).sum()),
        "high_quality": float(hq.double().mean()),
        "kl": kl_to_uniform(counts),
    }


def label_mode_stats(labels, n_modes: int) -> dict[str, float | int]:
    """Mode statistics of predicted labels (N,) in [0, n_modes): modes with >= 1 sample
    (the Stacked-MNIST convention) and KL(q || uniform) of the label histogram."""
    lab = torch.as_tensor(labels).detach().to("cpu", torch.int64).reshape(-1)
    counts = torch.bincount(lab, minlength=n_modes).numpy()
    return {"modes": int((counts >= 1).sum()), "kl": kl_to_uniform(counts)}
