"""Convolutional generators and discriminators for (C, H, W) images in [-1, 1].

The spatial size is reached from a small start (4x4 for 8/16/32, 7x7 for 28) by
doubling, so the same builders serve the shipped 8x8 digits and larger images.
G maps z (N, latent_dim) to (N, C, H, W) through tanh; D maps images to logits (N,).

Class-conditional variants (n_classes > 0) take labels as a second argument:
G(z, y) with a class embedding (concatenated to z in DCGAN, conditional BatchNorm gains
and biases in the ResNet, as in SNGAN), and D(x, y) with the projection of Miyato &
Koyama (2018): logit = psi(h) + <embed(y), h> on D's last features h. y is an int64 class
index (N,) or a float (N, n_classes) vector of class weights (one-hot, or a mixture),
which is what an exported model takes.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def upsampling_plan(size: int) -> tuple[int, int]:
    """(start size, number of 2x upsamplings) to reach `size`: 8 -> (4, 1), 28 -> (7, 2), 32 -> (4, 3)."""
    start, n_up = size, 0
    while start % 2 == 0 and start > 4:
        start, n_up = start // 2, n_up + 1
    return start, n_up


class ClassEmbedding(nn.Embedding):
    """nn.Embedding that also takes class weights: (N,) int64 -> rows, (N, n_classes) float -> y @ W."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return super().forward(y) if y.dtype == torch.int64 else y @ self.weight


class Projection(nn.Module):
    """The projection discriminator's class term <embed(y), h> for features h (N, dim)."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.embed = ClassEmbedding(n_classes, dim)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h).sum(dim=1)


def _check_labels(module: nn.Module, y: torch.Tensor | None) -> None:
    if (y is None) != (module.n_classes == 0):
        raise ValueError(f"{type(module).__name__} is {'un' if not module.n_classes else ''}conditional: "
                         f"{'do not pass' if not module.n_classes else 'pass'} class labels y")


# ---- DCGAN (Radford et al. 2016) --------------------------------------------------
class DCGANGenerator(nn.Module):
    def __init__(self, shape, latent_dim: int, width: int, n_classes: int = 0):
        super().__init__()
        c, h, _ = shape
        self.start, n_up = upsampling_plan(h)
        self.ch0 = width * 2**n_up
        self.n_classes = n_classes
        # conditional: the class embedding (size latent_dim) is concatenated to z
        self.embed = ClassEmbedding(n_classes, latent_dim) if n_classes else None
        z_in = latent_dim * (2 if n_classes else 1)
        self.fc = nn.Sequential(nn.Linear(z_in, self.ch0 * self.start**2), nn.BatchNorm1d(self.ch0 * self.start**2), nn.ReLU())
        blocks, ch = [], self.ch0
        for _ in range(n_up):
            blocks += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(ch, c, 3, 1, 1), nn.Tanh())

    def forward(self, z, y=None):
        _check_labels(self, y)
        if y is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.blocks(self.fc(z).view(-1, self.ch0, self.start, self.start))


class DCGANDiscriminator(nn.Module):
    def __init__(self, shape, width: int, n_classes: int = 0):
        super().__init__()
        self.n_classes = n_classes
        c, h, _ = shape
        start, n_up = upsampling_plan(h)
        layers, ch = [nn.Conv2d(c, width, 3, 1, 1), nn.LeakyReLU(0.2)], width
        for _ in range(n_up):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(ch * start**2, 1)
        self.projection = Projection(n_classes, ch * start**2) if n_classes else None

    def forward(self, x, y=None):
        _check_labels(self, y)
        h = self.features(x).flatten(1)
        logits = self.out(h).squeeze(1)
        return logits if y is None else logits + self.projection(h, y)


# ---- SNGAN ResNet (Miyato et al. 2018) ---------------------------------------------
class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; per-class gain (around 1) and bias from embeddings."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain, self.bias = ClassEmbedding(n_classes, channels), ClassEmbedding(n_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x, y):
        return self.bn(x) * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with a 1x1 upsampled shortcut; conditional BN with n_classes."""

    def __init__(self, cin: int, cout: int, n_classes: int = 0):
        super().__init__()
        if n_classes:
            self.bn1, self.bn2 = ConditionalBatchNorm2d(cin, n_classes), ConditionalBatchNorm2d(cout, n_classes)
        else:
            self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1)

    def _bn(self, bn, x, y):
        return bn(x) if y is None else bn(x, y)

    def forward(self, x, y=None):
        h = F.interpolate(F.relu(self._bn(self.bn1, x, y)), scale_factor=2)
        h = self.c2(F.relu(self._bn(self.bn2, self.c1(h), y)))
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
    def __init__(self, shape, latent_dim: int, width: int, n_classes: int = 0):
        super().__init__()
        c, h, _ = shape
        self.start, n_up = upsampling_plan(h)
        self.width, self.n_classes = width, n_classes
        self.fc = nn.Linear(latent_dim, width * self.start**2)
        self.blocks = nn.ModuleList([GBlock(width, width, n_classes) for _ in range(n_up)])
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, c, 3, 1, 1), nn.Tanh())

    def forward(self, z, y=None):
        _check_labels(self, y)
        h = self.fc(z).view(-1, self.width, self.start, self.start)
        for block in self.blocks:
            h = block(h, y)
        return self.out(h)


class ResNetDiscriminator(nn.Module):
    def __init__(self, shape, width: int, n_classes: int = 0):
        super().__init__()
        self.n_classes = n_classes
        c, h, _ = shape
        _, n_down = upsampling_plan(h)
        blocks = [DBlock(c, width, down=n_down > 0, first=True)]
        blocks += [DBlock(width, width, down=True, first=False) for _ in range(n_down - 1)]
        blocks += [DBlock(width, width, down=False, first=False)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, 1)
        self.projection = Projection(n_classes, width) if n_classes else None

    def forward(self, x, y=None):
        _check_labels(self, y)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling, as in SNGAN
        logits = self.out(h).squeeze(1)
        return logits if y is None else logits + self.projection(h, y)


def dcgan_conv(shape, latent_dim: int, width: int, n_classes: int = 0):
    return DCGANGenerator(shape, latent_dim, width, n_classes), DCGANDiscriminator(shape, width, n_classes)


def resnet_conv(shape, latent_dim: int, width: int, n_classes: int = 0):
    return ResNetGenerator(shape, latent_dim, width, n_classes), ResNetDiscriminator(shape, width, n_classes)
