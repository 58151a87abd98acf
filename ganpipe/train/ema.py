"""The EMA of G's weights, with a warm-up.

A plain EMA with decay 0.999 starts at G's random initial weights and forgets them slowly: 0.999^3000 is
still 5 %. Its generator then judges (and ASHA stops) a trial by a blend with the initial G for the first
thousands of steps: ring8 with quick.yaml's first values, 3000 steps, seeds 0 and 1, covered 0 of 8 modes at
every evaluation, against 8 and 7 of 8 from step 1000 on with the warm-up. So the decay after t updates is
min(decay, (1 + t) / (10 + t)), TensorFlow's ExponentialMovingAverage with num_updates: about 0.9 at first,
reaching 0.999 after ~9000 steps.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of the update after `updates` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


def make_ema(g: torch.nn.Module, decay: float, updates: Callable[[], int]) -> AveragedModel:
    """An EMA copy of `g` (buffers averaged too); `updates()` says how many updates came before the next one
    (the trainer's G step count, which checkpoints keep)."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], _n_averaged) -> None:
        # _n_averaged is a tensor on G's device: reading it would sync a GPU every step
        weight = 1 - warmup_decay(decay, updates())
        floats = [(e, p) for e, p in zip(ema_params, params) if torch.is_floating_point(e)]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], weight)
        for e, p in zip(ema_params, params):  # integer buffers (e.g. BatchNorm's count): take the current
            if not torch.is_floating_point(e):
                e.copy_(p)

    return AveragedModel(g, multi_avg_fn=update, use_buffers=True)
