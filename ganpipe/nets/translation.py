"""Image-to-image networks for unpaired translation (CycleGAN, Zhu et al. 2017), at small sizes.

    g, d = build_translation_networks(model_cfg, (C, H, W))
    g["ab"](a) -> b-like images, g["ba"](b) -> a-like;  d["a"](x), d["b"](x) -> patch logits (N, P)

G: conv - stride-2 conv down - residual blocks (resnet; none for dcgan) - transposed conv up -
conv - tanh, with instance norm as in CycleGAN. D: a PatchGAN without normalisation (spectral
norm may go on top), one logit per patch; the losses average over patches.
"""
from __future__ import annotations

from torch import nn

from ganpipe.config.schema import ModelConfig

TRANSLATION_ARCHITECTURES = {"resnet": 2, "dcgan": 0}  # name -> residual blocks at the bottleneck


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(),
                               nn.Conv2d(ch, ch, 3, 1, 1), nn.InstanceNorm2d(ch, affine=True))

    def forward(self, x):
        return x + self.f(x)


class Translator(nn.Module):
    """(N, C, H, W) in [-1, 1] -> (N, C, H, W) in [-1, 1]; H and W even."""

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        w2 = 2 * width
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.InstanceNorm2d(width, affine=True), nn.ReLU(),
            nn.Conv2d(width, w2, 4, 2, 1), nn.InstanceNorm2d(w2, affine=True), nn.ReLU(),
            *[_Residual(w2) for _ in range(blocks)],
            nn.ConvTranspose2d(w2, width, 4, 2, 1), nn.InstanceNorm2d(width, affine=True), nn.ReLU(),
            nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """(N, C, H, W) -> (N, H/2 * W/2) logits, one per overlapping patch."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )

    def forward(self, x):
        return self.net(x).flatten(1)


def build_translation_networks(cfg: ModelConfig, shape: tuple[int, ...]) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    if cfg.architecture not in TRANSLATION_ARCHITECTURES:
        raise ValueError(f"translation needs architecture {' or '.join(TRANSLATION_ARCHITECTURES)}, got {cfg.architecture}")
    c, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"translation needs an even image size, got {h}x{w}")
    blocks = TRANSLATION_ARCHITECTURES[cfg.architecture]
    g = nn.ModuleDict({"ab": Translator(c, cfg.width, blocks), "ba": Translator(c, cfg.width, blocks)})
    d = nn.ModuleDict({"a": PatchDiscriminator(c, cfg.width), "b": PatchDiscriminator(c, cfg.width)})
    if cfg.spectral_norm:
        from ganpipe.nets import add_spectral_norm

        add_spectral_norm(d)
    return g, d
