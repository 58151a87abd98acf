"""GAN losses as small pure functions of D's outputs, chosen by name, plus penalties.

Each loss is a pair (d_loss(real_logits, fake_logits), g_loss(fake_logits)) of
scalar tensors to minimise. Penalties that need D itself (gradient penalty, R1)
are separate functions the train loop adds with their weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class Loss:
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    gradient_penalty: bool = False  # WGAN-GP: add gp_weight * gradient_penalty(...)


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # -log D(x) - log(1 - D(G(z)))


def _minimax_g(fake: Tensor) -> Tensor:
    return -F.softplus(fake).mean()  # minimise log(1 - D(G(z))), Goodfellow's original


def _ns_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()  # minimise -log D(G(z))


def _wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _wgan_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()


def _lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


LOSSES: dict[str, Loss] = {
    "bce": Loss(_bce_d, _minimax_g),
    "ns": Loss(_bce_d, _ns_g),
    "wgan-gp": Loss(_wgan_d, _wgan_g, gradient_penalty=True),
    "hinge": Loss(_hinge_d, _wgan_g),
    "lsgan": Loss(_lsgan_d, _lsgan_g),
}


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name]


def gradient_penalty(d: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)|| - 1)^2] on the interpolates
    x_hat = alpha * real + (1 - alpha) * fake; alpha: uniform weights, one per sample (`interpolation_shape`)."""
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def interpolation_shape(real: Tensor) -> tuple[int, ...]:
    """The shape of gradient_penalty's alpha for a batch like `real`: one weight per sample."""
    return (real.shape[0],) + (1,) * (real.dim() - 1)


def r1_penalty(d: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): 0.5 * E[||grad D(x)||^2] on real data."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(dim=1).mean()
