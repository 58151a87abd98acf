"""Generators and discriminators chosen by name; no training logic here.

    g, d = build_networks(model_cfg, dataset.shape)
    g(z: (N, latent_dim)) -> (N, *shape);  d(x: (N, *shape)) -> logits (N,)
"""
from __future__ import annotations

from typing import Callable

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


def build_networks(cfg: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """(G, D) for samples of `shape`: (2,) for points, (C, H, W) for images."""
    if cfg.architecture not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {cfg.architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    for_points, for_images = ARCHITECTURES[cfg.architecture]
    build = for_images if len(shape) == 3 else for_points
    g, d = build(tuple(shape), cfg.latent_dim, cfg.width)
    if cfg.spectral_norm:
        add_spectral_norm(d)
    return g, d


def add_spectral_norm(module: nn.Module) -> None:
    """Spectral norm (Miyato et al. 2018) on every linear and conv layer, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            setattr(module, name, spectral_norm(child))
        else:
            add_spectral_norm(child)
