"""Convolutional generators and discriminators for (C, H, W) images in [-1, 1].

The spatial size is reached from a small start (4x4 for 8/16/32, 7x7 for 28) by
doubling, so the same builders serve the shipped 8x8 digits and larger images.
G maps z (N, latent_dim) to (N, C, H, W) through tanh; D maps images to logits (N,).
"""
from __future__ import annotations

from torch import nn
import torch.nn.functional as F


def upsampling_plan(size: int) -> tuple[int, int]:
    """(start size, number of 2x upsamplings) to reach `size`: 8 -> (4, 1), 28 -> (7, 2), 32 -> (4, 3)."""
    start, n_up = size, 0
    while start % 2 == 0 and start > 4:
        start, n_up = start // 2, n_up + 1
    return start, n_up


# ---- DCGAN (Radford et al. 2016) --------------------------------------------------
class DCGANGenerator(nn.Module):
    def __init__(self, shape, latent_dim: int, width: int):
        super().__init__()
        c, h, _ = shape
        self.start, n_up = upsampling_plan(h)
        self.ch0 = width * 2**n_up
        self.fc = nn.Sequential(nn.Linear(latent_dim, self.ch0 * self.start**2), nn.BatchNorm1d(self.ch0 * self.start**2), nn.ReLU())
        blocks, ch = [], self.ch0
        for _ in range(n_up):
            blocks += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(ch, c, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.blocks(self.fc(z).view(-1, self.ch0, self.start, self.start))


class DCGANDiscriminator(nn.Module):
    def __init__(self, shape, width: int):
        super().__init__()
        c, h, _ = shape
        start, n_up = upsampling_plan(h)
        layers, ch = [nn.Conv2d(c, width, 3, 1, 1), nn.LeakyReLU(0.2)], width
        for _ in range(n_up):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(ch * start**2, 1)

    def forward(self, x):
        return self.out(self.features(x).flatten(1)).squeeze(1)


# ---- SNGAN ResNet (Miyato et al. 2018) ---------------------------------------------
class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with a 1x1 upsampled shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.c2(F.relu(self.bn2(self.c1(h))))
        return h + self.sc(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    """(ReLU)-conv-ReLU-conv-(avgpool) with a 1x1 shortcut; no normalisation (SN goes on top)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1)
        self.down, self.first = down, first

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        s = self.sc(x)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class ResNetGenerator(nn.Module):
    def __init__(self, shape, latent_dim: int, width: int):
        super().__init__()
        c, h, _ = shape
        self.start, n_up = upsampling_plan(h)
        self.width = width
        self.fc = nn.Linear(latent_dim, width * self.start**2)
        self.blocks = nn.Sequential(*[GBlock(width, width) for _ in range(n_up)])
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, c, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.out(self.blocks(self.fc(z).view(-1, self.width, self.start, self.start)))


class ResNetDiscriminator(nn.Module):
    def __init__(self, shape, width: int):
        super().__init__()
        c, h, _ = shape
        _, n_down = upsampling_plan(h)
        blocks = [DBlock(c, width, down=n_down > 0, first=True)]
        blocks += [DBlock(width, width, down=True, first=False) for _ in range(n_down - 1)]
        blocks += [DBlock(width, width, down=False, first=False)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling, as in SNGAN
        return self.out(h).squeeze(1)


def dcgan_conv(shape, latent_dim: int, width: int):
    return DCGANGenerator(shape, latent_dim, width), DCGANDiscriminator(shape, width)


def resnet_conv(shape, latent_dim: int, width: int):
    return ResNetGenerator(shape, latent_dim, width), ResNetDiscriminator(shape, width)
