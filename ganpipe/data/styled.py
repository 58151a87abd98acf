"""Two unpaired image domains built from the bundled digits, for style transfer (CycleGAN):

    A  plain digits: white strokes on black (grey, as 3 channels)
    B  the same kind of digits restyled: coloured strokes on procedurally generated textures

The 1797 digits are split in two stratified halves: A holds the plain version of one half,
B the restyled version of the other, so no digit appears in both domains (unpaired in the
strictest sense). The restyled images were built offline by `build_styled()` and ship as
package data (assets/digits-styled.npz); `python -m ganpipe.data.styled` rebuilds the file
and a test checks that the rebuild is byte-identical.

    a, b = digit_domains()          # two ImageFiles datasets (uint8, labels, content sha256)
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

ASSET = Path(__file__).parent / "assets" / "digits-styled.npz"
STYLE_SEED = 20261126  # the textures and colours; change it and the asset together
SPLIT_SEED = 97  # which digits go to A and which to B
DOMAIN_CLASSES = tuple(str(i) for i in range(10))


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0, 1]; (...,) -> (..., 3)."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        out[m] = np.stack([r[m], g[m], b[m]], axis=-1)
    return out


def build_styled(digits: np.ndarray, seed: int = STYLE_SEED) -> np.ndarray:
    """(N, 8, 8) digit intensities in 0..16 -> (N, 3, 8, 8) uint8: each image gets a texture
    (a dark two-colour gradient at a random angle, modulated by stripes of random frequency and
    phase) and a bright stroke colour of a random hue, blended by the stroke intensity."""
    rng = np.random.default_rng(seed)
    n = len(digits)
    yy, xx = np.mgrid[0:8, 0:8] / 7.0
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min(axis=(1, 2), keepdims=True)) / (np.ptp(t, axis=(1, 2), keepdims=True) + 1e-9)
    bg_hues = rng.uniform(0, 1, (n, 2))
    c1 = _hsv_to_rgb(bg_hues[:, 0], rng.uniform(0.4, 0.9, n), rng.uniform(0.15, 0.4, n))
    c2 = _hsv_to_rgb(bg_hues[:, 1], rng.uniform(0.4, 0.9, n), rng.uniform(0.15, 0.4, n))
    bg = c1[:, None, None, :] * (1 - t[..., None]) + c2[:, None, None, :] * t[..., None]
    freq = rng.uniform(1.0, 3.0, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    stripe_angle = rng.uniform(0, np.pi, n)[:, None, None]
    stripes = np.sin(2 * np.pi * freq * (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) + phase)
    bg = bg * (0.75 + 0.25 * stripes[..., None])
    stroke = _hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0.6, 1.0, n), rng.uniform(0.85, 1.0, n))
    alpha = (digits / 16.0)[..., None]
    img = bg * (1 - alpha) + stroke[:, None, None, :] * alpha
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)


def split_halves(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A indices, B indices): a stratified half each, fixed by SPLIT_SEED."""
    from ganpipe.metrics.digits_classifier import stratified_split

    return stratified_split(labels, 0.5, SPLIT_SEED)


def _digit_intensities() -> tuple[np.ndarray, torch.Tensor]:
    """The bundled digits as (N, 8, 8) float64 intensities 0..16 and (N,) labels."""
    from ganpipe.data.digits import load_digits_tensors

    images, labels = load_digits_tensors()  # [-1, 1] = intensity / 8 - 1, exact in float32
    return ((images[:, 0].double() + 1) * 8).numpy(), labels


def write_asset(path: Path = ASSET) -> str:
    """Build the restyled digits and write them to `path`; returns the file's sha256."""
    digits, _ = _digit_intensities()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez_compressed(f, styled=build_styled(digits))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def digit_domains():
    """(A, B): plain and restyled digits as ImageFiles datasets, disjoint stratified halves."""
    from ganpipe.data.files import ImageFiles, content_sha256

    digits, labels = _digit_intensities()
    with np.load(ASSET) as npz:
        styled = npz["styled"]
    plain = np.repeat(np.round(digits / 16.0 * 255).astype(np.uint8)[:, None], 3, axis=1)
    idx_a, idx_b = split_halves(labels)
    out = []
    for name, images, idx in (("digits-plain", plain, idx_a), ("digits-styled", styled, idx_b)):
        imgs, labs = images[idx.numpy()], labels[idx]
        out.append(ImageFiles(name, "images", tuple(imgs.shape[1:]), 10, images=torch.from_numpy(imgs),
                              labels=labs, classes=DOMAIN_CLASSES, root="",
                              content_sha256=content_sha256(imgs, labs.numpy())))
    return tuple(out)


if __name__ == "__main__":
    print(f"wrote {ASSET} sha256 {write_asset()}")
