"""Optimizers by name, with separate learning rates for G and D."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ganpipe.config.schema import OptimizerConfig

Params = Iterable[torch.nn.Parameter]

OPTIMIZERS: dict[str, Callable[[Params, float, OptimizerConfig], torch.optim.Optimizer]] = {
    "adam": lambda params, lr, cfg: torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2)),
    "rmsprop": lambda params, lr, cfg: torch.optim.RMSprop(params, lr=lr),
}


def make_optimizers(cfg: OptimizerConfig, g_params: Params, d_params: Params):
    """(G optimizer, D optimizer) with lr_g and lr_d."""
    if cfg.name not in OPTIMIZERS:
        raise KeyError(f"unknown optimizer {cfg.name!r}; valid: {', '.join(OPTIMIZERS)}")
    build = OPTIMIZERS[cfg.name]
    return build(g_params, cfg.lr_g, cfg), build(d_params, cfg.lr_d, cfg)
