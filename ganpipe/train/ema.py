"""The EMA of G's weights, with a warm-up.

A plain EMA with decay 0.999 starts at G's random initial weights and forgets them slowly: 0.999^3000 is
still 5 %. Its generator then judges (and ASHA stops) a trial by a blend with the initial G for the first
thousands of steps: ring8 with quick.yaml's first values, 3000 steps, seeds 0 and 1, covered 0 of 8 modes at
every evaluation, against 8 and 7 of 8 from step 1000 on with the warm-up. So the decay of the t-th update is
min(decay, (1 + t) / (10 + t)), TensorFlow's ExponentialMovingAverage with num_updates: 0.18 at the first
average, 0.5 at the 8th, 0.9 at the 81st, 0.999 from the ~9000th.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of the update after `updates` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


def make_ema(g: torch.nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of `g`, buffers averaged too. Its update count is AveragedModel's own `n_averaged`, a
    buffer, so checkpoints keep it (reading it syncs a GPU, as AveragedModel's own checks of it already do)."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # AveragedModel calls this once per device and dtype: floats only, or integers only
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - warmup_decay(decay, int(n_averaged)))
        else:  # integer buffers (BatchNorm's batch count): the current value
            for e, p in zip(ema_params, params):
                e.copy_(p)

    return AveragedModel(g, multi_avg_fn=update, use_buffers=True)
