"""A metric sanity panel: fixed synthetic "generators" whose order the published protocol knows, judged by
every metric of the Evaluator (tests/test_metric_panel.py, benchmarks/metric_panel.py, docs/metrics.md).

    rows = run_panel("ring8")            # {generator name: Evaluator(ring8).evaluate(its samples)}
    pairs = dominance_pairs(rows)        # (A, B): A beats B on the protocol's own figures
    misranked(rows, pairs, "fid")        # the pairs a score orders the other way

The protocol (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018) judges a generator by modes covered
(more is better), high-quality samples (points: within 3 std of a centre; more is better) and the KL of the
mode histogram to uniform (less is better). A dominates B when it is at least as good on each figure and
better on one. Every generator is drawn from a fixed seed: the panel is the same at every run.
"""
from __future__ import annotations

import torch

from ganpipe.data import Dataset, get_dataset
from ganpipe.metrics.evaluator import Evaluator

PANEL_SEED = 4242  # not a protocol seed: the "real" generator is a second, independent draw
BLUR = 5.0  # points: the mixture with every std x5
OFF_MODE = 0.2  # share of samples replaced by uniform noise (points: over the data's bounding box; images: pixels)
PIXEL_BLUR_PX, PIXEL_NOISE = 1.0, 0.25  # images: Gaussian blur sigma (pixels), then N(0, 0.25^2) per pixel
HIGHER = ("modes", "high_quality")  # the protocol's figures: higher is better for these ...
LOWER = ("kl",)  # ... lower for this
POINTS = ("real", "blob", "one mode", "half the modes", "5x blur", "20% off-mode")
IMAGES = ("real", "blob", "one class", "half the classes", "blurred + noised", "20% noise")


def _blob(real: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(n, *shape) -> n draws of the Gaussian with the same mean and covariance, same shape (float64 maths)."""
    x = real.reshape(len(real), -1).double()
    mu, cov = x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    w, v = torch.linalg.eigh(cov)
    root = v * w.clamp_min(0).sqrt()  # cov = root @ root.T, also when cov is singular (constant pixels)
    z = torch.randn(len(x), x.shape[1], generator=g, dtype=torch.float64)
    return (mu + z @ root.T).float().reshape(real.shape)


def _replace_share(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x with its first OFF_MODE share of rows replaced by the same rows of `noise` (samples' order is free)."""
    k = round(OFF_MODE * len(x))
    return torch.cat([noise[:k], x[k:]])


def point_generators(ds: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The panel's (n, 2) samples for a 2-D mixture: POINTS in order."""
    g = torch.Generator().manual_seed(PANEL_SEED)
    c, std = ds.centers, ds.std
    real = ds.sample(n, g)

    def around(centers: torch.Tensor, scale: float) -> torch.Tensor:
        idx = torch.randint(len(centers), (n,), generator=g)
        return centers[idx] + torch.randn(n, 2, generator=g) * std * scale

    lo, hi = real.min(0).values, real.max(0).values  # the data's bounding box
    uniform = lo + (hi - lo) * torch.rand(n, 2, generator=g)
    return {"real": real, "blob": _blob(real, g), "one mode": around(c[:1], 1.0),
            "half the modes": around(c[::2], 1.0), "5x blur": around(c, BLUR),
            "20% off-mode": _replace_share(ds.sample(n, g), uniform)}


def _blur(images: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> each channel convolved with a normalised 5x5 Gaussian of PIXEL_BLUR_PX (zero padding)."""
    t = torch.arange(5, dtype=torch.float32) - 2
    k1 = torch.exp(-t**2 / (2 * PIXEL_BLUR_PX**2))
    k = torch.outer(k1, k1) / k1.sum() ** 2
    n, ch, h, w = images.shape
    out = torch.nn.functional.conv2d(images.reshape(n * ch, 1, h, w), k[None, None], padding=2)
    return out.reshape(n, ch, h, w)


def image_generators(ds: Dataset, n: int) -> dict[str, torch.Tensor]:
    """The panel's (n, C, 8, 8) samples for digits (C = 1) or stacked digits (C = 3, each channel a digit
    of the allowed classes, so "half the classes" holds 5^3 = 125 of the 1000 modes): IMAGES in order."""
    g = torch.Generator().manual_seed(PANEL_SEED)
    pool, labels = ds.images, ds.labels  # (1797, 1, 8, 8), (1797,)
    channels = ds.shape[0]

    def from_classes(classes: list[int]) -> torch.Tensor:
        allowed = torch.nonzero(torch.isin(labels, torch.tensor(classes))).squeeze(1)
        idx = allowed[torch.randint(len(allowed), (n, channels), generator=g)]
        return pool[idx].squeeze(2)  # (n, C, 1, 8, 8) -> (n, C, 8, 8)

    real = ds.sample(n, g)
    noised = _blur(ds.sample(n, g)) + PIXEL_NOISE * torch.randn(n, *ds.shape, generator=g)
    noise = torch.rand(n, *ds.shape, generator=g) * 2 - 1
    return {"real": real, "blob": _blob(real, g).clamp(-1, 1), "one class": from_classes([0]),
            "half the classes": from_classes([0, 1, 2, 3, 4]), "blurred + noised": noised.clamp(-1, 1),
            "20% noise": _replace_share(ds.sample(n, g), noise)}


def run_panel(name: str, num_samples: int = 0) -> dict[str, dict[str, float]]:
    """Every panel generator of the built-in dataset `name`, judged by its protocol's Evaluator
    (num_samples generated samples each; 0 = the protocol's)."""
    ds = get_dataset(name)
    ev = Evaluator(ds, num_samples)
    make = point_generators if ds.kind == "points" else image_generators
    return {gen: ev.evaluate(samples) for gen, samples in make(ds, ev.num_samples).items()}


def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    """A is at least as good as B on each of the protocol's figures it reports, and better on one."""
    higher = [k for k in HIGHER if k in a]
    lower = [k for k in LOWER if k in a]
    if any(a[k] < b[k] for k in higher) or any(a[k] > b[k] for k in lower):
        return False
    return any(a[k] > b[k] for k in higher) or any(a[k] < b[k] for k in lower)


def dominance_pairs(rows: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """Every (A, B) of the panel where A dominates B."""
    return [(a, b) for a in rows for b in rows if a != b and dominates(rows[a], rows[b])]


def misranked(rows: dict[str, dict[str, float]], pairs: list[tuple[str, str]], score: str) -> list[tuple[str, str]]:
    """The pairs (A, B) that `score` (lower is better) does not rank A strictly better than B."""
    return [(a, b) for a, b in pairs if not rows[a][score] < rows[b][score]]
