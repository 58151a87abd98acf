"""Metrics on the fixed evaluation protocol: Fréchet distance, PRDC coverage, mode statistics.

    frechet_distance(real (N, d), fake (M, d)) -> float     # float64, eigenvalue trace form
    coverage(real (N, d), fake (M, d), k=5) -> float        # Naeem et al. 2020
    Evaluator(dataset).evaluate(fake) -> {"fid", "kid", "diversity", ..., "mode_tv" (points)}

What each number means per dataset: docs/metrics.md.
"""
from ganpipe.metrics.fid import frechet_distance
from ganpipe.metrics.modes import label_mode_stats, point_mode_stats
from ganpipe.metrics.prdc import coverage, prdc
from ganpipe.metrics.constants import fixed_labels, fixed_latents
from ganpipe.metrics.evaluator import Evaluator

__all__ = [
    "Evaluator",
    "coverage",
    "fixed_labels",
    "fixed_latents",
    "frechet_distance",
    "label_mode_stats",
    "point_mode_stats",
    "prdc",
]
