"""A small CNN for the 8x8 digits: its argmax gives the digit modes, its penultimate layer
the FID / coverage feature space. Trained reproducibly and shipped as package data.

    model = load_digits_classifier()          # cached, eval mode, no grad
    feats = model.features(x)                 # (N, 1, 8, 8) in [-1, 1] -> (N, 64)
    logits = model(x)                         # (N, 10)
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ganpipe.metrics.weights_file import (  # noqa: F401 - weights_sha256 re-exported
    cached_loader, cpu_state, load_cached, read_weights, save_weights, weights_sha256,
)

ARCH_VERSION = "digits-cnn-v1"
FEATURE_DIM = 64
DEFAULT_SEED = 0
SPLIT_SEED = 20240517  # the 80/20 split is fixed, whatever the training seed
HELDOUT_FRACTION = 0.2
WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_classifier.pt"


class FeatureClassifier(nn.Module):
    """`body` maps images to the feature space of the evaluation protocol, `head` to class logits.

    Subclasses build both; the shared calls live here so every extractor is used the same way.
    """

    body: nn.Module
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, d) penultimate activations."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, classes) logits."""
        return self.head(self.body(x))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass for both: ((N, d), (N, classes))."""
        f = self.body(x)
        return f, self.head(f)


class DigitsClassifier(FeatureClassifier):
    """conv16 -> conv32 -> pool -> conv64 -> pool -> fc64 (features) -> fc10; ~40k parameters."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, 10)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) labels -> (rest, picked) sorted index tensors; `picked` holds round(fraction * n_c)
    of every class c, drawn with a torch.Generator seeded by `seed` (same call, same split)."""
    g = torch.Generator().manual_seed(seed)
    rest, picked = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_pick = round(fraction * len(idx))
        picked.append(idx[:n_pick])
        rest.append(idx[n_pick:])
    return torch.cat(rest).sort().values, torch.cat(picked).sort().values


def heldout_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed stratified 80/20 (train, held-out) index split of the 1797 digits."""
    from ganpipe.data.digits import load_digits_tensors

    _, labels = load_digits_tensors()
    return stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model(images).argmax(dim=1) == labels).float().mean())


def train_digits_classifier(seed: int = DEFAULT_SEED, epochs: int = 40, verbose: bool = False) -> tuple[DigitsClassifier, float]:
    """Train on the fixed 80 % split; return (model in eval mode, held-out accuracy).

    Reproducible: weights from torch.manual_seed(seed), minibatch order from its own
    generator, one intra-op thread (thread count changes float reduction order).
    """
    from ganpipe.data.digits import load_digits_tensors

    images, labels = load_digits_tensors()
    train_idx, test_idx = heldout_split()
    x, y = images[train_idx], labels[train_idx]
    log = None
    if verbose:
        t0 = time.perf_counter()
        log = lambda epoch, loss, model: print(  # noqa: E731
            f"epoch {epoch} loss {loss:.4f} heldout {accuracy(model, images[test_idx], labels[test_idx]):.4f} "
            f"{time.perf_counter() - t0:.1f}s")
    torch.manual_seed(seed)
    model = fit_classifier(DigitsClassifier(), lambda epoch: (x, y), epochs, seed, log)
    return model, accuracy(model, images[test_idx], labels[test_idx])


def fit_classifier(model: nn.Module, epoch_data, epochs: int, seed: int, log=None, batch: int = 64) -> nn.Module:
    """The shipped classifiers' recipe: Adam (lr 2e-3, weight decay 1e-4) with a cosine schedule,
    minibatches in an order drawn from a generator seeded by `seed`, one intra-op thread (the
    thread count changes float reduction order). `epoch_data(epoch)` gives that epoch's (x, y);
    `log(epoch, last loss, model)` is told of each epoch. Returns the model in eval mode, no grad."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        order = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        for epoch in range(epochs):
            x, y = epoch_data(epoch)
            model.train()
            perm = torch.randperm(len(x), generator=order)
            for i in range(0, len(x), batch):
                b = perm[i : i + batch]
                loss = nn.functional.cross_entropy(model(x[b]), y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            if log is not None:
                log(epoch, loss.item(), model)
    finally:
        torch.set_num_threads(threads)
    return model.eval().requires_grad_(False)


def save_digits_classifier(model: DigitsClassifier, path: str | Path, *, seed: int, heldout_accuracy: float) -> str:
    """Write state_dict + metadata (arch version, seed, held-out accuracy, sha256); return the sha256."""
    return save_weights(path, cpu_state(model), {"arch_version": ARCH_VERSION, "seed": seed,
                                                 "heldout_accuracy": heldout_accuracy})


def read_digits_checkpoint(path: str | Path = WEIGHTS_PATH) -> dict:
    """The raw checkpoint dict; raises if the architecture or the weights' sha256 do not match."""
    return read_weights(path, ARCH_VERSION)


_load_cached = cached_loader(read_digits_checkpoint, lambda ckpt: DigitsClassifier(), maxsize=4)


def load_digits_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The shipped (or given) classifier, loaded once per process, eval mode, no grad.
    `.metadata` holds arch_version, seed, heldout_accuracy and sha256."""
    if path is None and not WEIGHTS_PATH.exists():
        raise FileNotFoundError(f"{WEIGHTS_PATH} is missing; create it with `ganpipe features train digits`")
    return load_cached(_load_cached, path or WEIGHTS_PATH)
