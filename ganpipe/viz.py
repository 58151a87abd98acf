"""Sample pictures: a scatter PNG for 2-D points, a tiled grid PNG for images."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def image_grid(images: torch.Tensor, ncol: int | None = None) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one (rows*H, ncol*W[, 3]) array in [0, 1] with 1-px gaps."""
    images = images.detach().cpu().float().clamp(-1, 1).add(1).div(2)
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = np.ones((nrow * (h + 1) - 1, ncol * (w + 1) - 1, c), dtype=np.float32)
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        r, col = divmod(i, ncol)
        grid[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = img
    return grid[..., 0] if c == 1 else grid


def mode_marks(dataset) -> tuple[torch.Tensor, float] | None:
    """(centres (K, 2), std) of a 2-D Gaussian mixture's modes (ring8, grid25), else None."""
    centers = getattr(dataset, "centers", None)
    return None if centers is None else (centers, float(dataset.std))


def save_samples_png(samples: torch.Tensor, path: str | Path, title: str = "", max_images: int = 64,
                     ncol: int | None = None, modes: tuple[torch.Tensor, float] | None = None) -> Path:
    """Scatter for (N, 2) points, grid for (N, C, H, W) images (`ncol` columns, default square);
    returns the path. Conditional samples on fixed_labels with ncol=n_classes: one class a column.
    `modes`: (centres, std) of the true modes (mode_marks), drawn on a scatter as crosses in the circles that
    count a sample as on the mode (3 std, the protocol's rule), so coverage shows by eye."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples.dim() == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        pts = samples.detach().cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        if modes is not None:
            centers, std = np.asarray(modes[0], dtype=float), modes[1]
            ax.scatter(centers[:, 0], centers[:, 1], marker="x", s=30, c="crimson", linewidths=1, zorder=3,
                       label="true modes (3 std)")
            for x, y in centers:
                ax.add_patch(plt.Circle((x, y), 3 * std, fill=False, ec="crimson", lw=0.8, zorder=3))
            ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
        ax.set_aspect("equal")
    else:
        if ncol:
            max_images = max(ncol, max_images // ncol * ncol)  # whole rows only
        grid = image_grid(samples[:max_images], ncol)
        side = min(40.0, max(5.0, max(grid.shape[:2]) / 100))  # at least a screen pixel per image pixel
        fig, ax = plt.subplots(figsize=(side, side))
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
