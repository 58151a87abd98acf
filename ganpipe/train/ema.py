"""The EMA of G's weights, with a warm-up.

A plain EMA with decay 0.999 starts at G's random initial weights and forgets them slowly: 0.999^3000 is
still 5 %. Its generator then judges (and ASHA stops) a trial by a blend with the initial G for the first
thousands of steps: ring8 with quick.yaml's first values, 3000 steps, seeds 0 and 1, covered 0 of 8 modes at
every evaluation, against 8 and 7 of 8 from step 1000 on with the warm-up. So the decay of the t-th update is
min(decay, (1 + t) / (10 + t)), TensorFlow's ExponentialMovingAverage with num_updates: 0.18 at the first
average, 0.5 at the 8th, 0.9 at the 81st, 0.999 from the ~9000th.

On a GPU the update reads nothing back to the host (AveragedModel's own update does, twice), so it costs no
synchronisation and a CUDA graph can hold it (ganpipe.train.graphs); on a CPU reading the count is free.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, updates: int) -> float:
    """The decay of the update after `updates` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


class WarmupEMA(AveragedModel):
    """AveragedModel's container and checkpoint layout (`module.*`, `n_averaged`), buffers averaged too;
    its update count `n_averaged` lives on G's device."""

    def __init__(self, g: torch.nn.Module, decay: float):
        super().__init__(g, device=next(g.parameters()).device, use_buffers=True)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        n = self.n_averaged
        floats: tuple[list, list] = ([], [])
        ints: tuple[list, list] = ([], [])
        for mine, theirs in zip(_tensors(self.module), _tensors(model), strict=True):
            pairs = floats if mine.is_floating_point() else ints
            pairs[0].append(mine)
            pairs[1].append(theirs)
        if floats[0] and n.device.type == "cpu":  # reading n is free here: one fused lerp
            count = int(n)  # the first update copies G (lerp with weight 1 returns G's value exactly)
            torch._foreach_lerp_(floats[0], floats[1], 1 - warmup_decay(self.decay, count) if count else 1.0)
        elif floats[0]:
            sync_free_lerp(floats[0], floats[1], n, self.decay)
        if ints[0]:  # integer buffers (BatchNorm's batch count): the current value
            torch._foreach_copy_(ints[0], ints[1])
        n.add_(1)


def sync_free_lerp(mine: list[torch.Tensor], theirs: list[torch.Tensor], n: torch.Tensor, decay: float) -> None:
    """The update of `mine` towards `theirs` after n earlier ones, its weight kept a tensor on n's device:
    nothing is read back to the host (foreach lerp takes a Python number only)."""
    warm = torch.clamp((1 + n) / (10 + n), max=decay)
    weight = torch.where(n == 0, torch.ones_like(warm), 1 - warm)
    step = torch._foreach_sub(theirs, mine)
    torch._foreach_mul_(step, weight)
    torch._foreach_add_(mine, step)


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    # gathered at each update: Module.to() replaces buffers (not parameters) by new tensors
    return [*module.parameters(), *module.buffers()]


def make_ema(g: torch.nn.Module, decay: float) -> WarmupEMA:
    """An EMA copy of `g`, buffers averaged too, with the warm-up above."""
    return WarmupEMA(g, decay)
