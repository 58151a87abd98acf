"""Generators and discriminators for 2-D points (and flattened small images).

mlp:    the classic fully connected G/D of the ring/grid literature (width, 2*width).
dcgan:  the DCGAN recipe on fully connected layers (BatchNorm + ReLU in G, LeakyReLU in D).
resnet: SNGAN-style residual blocks on fully connected layers.
Every G maps z (N, latent_dim) to (N, *shape); every D maps (N, *shape) to logits (N,).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _Flat(nn.Module):
    """Wraps a (N, features) network so it reads/writes samples of any shape."""

    def __init__(self, body: nn.Module, out_shape: tuple[int, ...] | None, tanh: bool):
        super().__init__()
        self.body, self.out_shape, self.tanh = body, out_shape, tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x.flatten(1))
        if self.tanh:
            y = torch.tanh(y)
        return y.view(-1, *self.out_shape) if self.out_shape is not None else y.squeeze(1)


class _ResidualFC(nn.Module):
    def __init__(self, width: int, norm: bool):
        super().__init__()
        layers = [nn.BatchNorm1d(width)] if norm else []
        layers += [nn.ReLU(), nn.Linear(width, width)]
        layers += [nn.BatchNorm1d(width)] if norm else []
        layers += [nn.ReLU(), nn.Linear(width, width)]
        self.f = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.f(x)


def _dims(shape, latent_dim):
    return latent_dim, math.prod(shape)


def mlp(shape: tuple[int, ...], latent_dim: int, width: int, images: bool):
    z, n = _dims(shape, latent_dim)
    g = nn.Sequential(nn.Linear(z, width), nn.ReLU(), nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, n))
    d = nn.Sequential(
        nn.Linear(n, 2 * width), nn.LeakyReLU(0.2), nn.Linear(2 * width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1)
    )
    return _Flat(g, shape, images), _Flat(d, None, False)


def dcgan_fc(shape: tuple[int, ...], latent_dim: int, width: int, images: bool):
    z, n = _dims(shape, latent_dim)
    g = nn.Sequential(
        nn.Linear(z, width), nn.BatchNorm1d(width), nn.ReLU(),
        nn.Linear(width, 2 * width), nn.BatchNorm1d(2 * width), nn.ReLU(),
        nn.Linear(2 * width, n),
    )
    d = nn.Sequential(
        nn.Linear(n, 2 * width), nn.LeakyReLU(0.2), nn.Linear(2 * width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1)
    )
    return _Flat(g, shape, images), _Flat(d, None, False)


def resnet_fc(shape: tuple[int, ...], latent_dim: int, width: int, images: bool, blocks: int = 2):
    z, n = _dims(shape, latent_dim)
    g = nn.Sequential(nn.Linear(z, width), *[_ResidualFC(width, True) for _ in range(blocks)], nn.ReLU(), nn.Linear(width, n))
    d = nn.Sequential(nn.Linear(n, width), *[_ResidualFC(width, False) for _ in range(blocks)], nn.ReLU(), nn.Linear(width, 1))
    return _Flat(g, shape, images), _Flat(d, None, False)
