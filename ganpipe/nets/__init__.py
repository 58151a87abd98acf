"""Generators and discriminators chosen by name; no training logic here.

    g, d = build_networks(model_cfg, dataset.shape)
    g(z: (N, latent_dim)) -> (N, *shape);  d(x: (N, *shape)) -> logits (N,)

    g, d = build_networks(model_cfg, shape, n_classes=10)     # model_cfg.conditional
    g(z, y) -> (N, *shape);  d(x, y) -> logits (N,)             # y: (N,) class indices
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganpipe.config.schema import ModelConfig
from ganpipe.nets import images, points

# name -> (builder for 2-D points, builder for (C, H, W) images)
ARCHITECTURES: dict[str, tuple[Callable, Callable]] = {
    "mlp": (
        lambda shape, z, w: points.mlp(shape, z, w, images=False),
        lambda shape, z, w: points.mlp(shape, z, w, images=True),
    ),
    "dcgan": (lambda shape, z, w: points.dcgan_fc(shape, z, w, images=False), images.dcgan_conv),
    "resnet": (lambda shape, z, w: points.resnet_fc(shape, z, w, images=False), images.resnet_conv),
}
# class-conditional variants (conditional G, projection D) exist for these, on images
CONDITIONAL_ARCHITECTURES = ("dcgan", "resnet")


def build_networks(cfg: ModelConfig, shape: tuple[int, ...], n_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """(G, D) for samples of `shape`: (2,) for points, (C, H, W) for images.
    With cfg.conditional, n_classes (> 1) is the number of classes G and D are conditioned on."""
    if cfg.architecture not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {cfg.architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    for_points, for_images = ARCHITECTURES[cfg.architecture]
    if cfg.conditional:
        if cfg.architecture not in CONDITIONAL_ARCHITECTURES or len(shape) != 3:
            raise ValueError(f"model.conditional needs images and architecture {' or '.join(CONDITIONAL_ARCHITECTURES)}; "
                             f"got {cfg.architecture} on samples of shape {tuple(shape)}")
        if n_classes < 2:
            raise ValueError("model.conditional needs labelled data (at least 2 classes)")
        g, d = for_images(tuple(shape), cfg.latent_dim, cfg.width, n_classes)
    else:
        build = for_images if len(shape) == 3 else for_points
        g, d = build(tuple(shape), cfg.latent_dim, cfg.width)
    if cfg.spectral_norm:
        add_spectral_norm(d)
    return g, d


def add_spectral_norm(module: nn.Module) -> None:
    """Spectral norm (Miyato et al. 2018) on every linear, conv and (projection) embedding layer, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.Embedding)):
            setattr(module, name, spectral_norm(child))
        else:
            add_spectral_norm(child)


class LabelledSampler(nn.Module):
    """A conditional G as one-input model for export: x = [z | class weights] (N, latent_dim + n_classes)."""

    def __init__(self, generator: nn.Module, latent_dim: int):
        super().__init__()
        self.generator, self.latent_dim = generator, latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x[:, : self.latent_dim], x[:, self.latent_dim :])
