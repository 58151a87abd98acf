"""A small CNN classifier trained on a labelled image dataset read from files (MNIST,
Fashion-MNIST, CIFAR-10, a class-per-folder image folder): its penultimate layer is the
FID / coverage feature space of that dataset's evaluation protocol, its argmax the modes.

    info = train_and_save(get_dataset(DataConfig("mnist", root="/data/mnist")))
    model = load_image_classifier(info["path"])      # cached, eval mode, no grad, .metadata
    feats, logits = model.features_and_logits(x)     # (N, C, S, S) in [-1, 1] -> (N, 128), (N, K)

The file carries what the protocol needs to refuse a wrong pairing: the dataset it was
trained on, a root-independent sha256 of that data, image size, channels, classes, the
held-out accuracy and the sha256 of the weights.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from ganpipe.metrics.digits_classifier import FeatureClassifier, accuracy, stratified_split
from ganpipe.metrics.weights_file import cached_loader, cpu_state, load_cached, read_weights, save_weights

ARCH_VERSION = "image-cnn-v1"
FEATURE_DIM = 128
DEFAULT_SEED = 0
SPLIT_SEED = 20240517  # the held-out split is fixed, whatever the training seed
HELDOUT_FRACTION = 0.2
BATCH = 128
TARGET_STEPS = 1500  # default epochs: about this many minibatches, between MIN and MAX epochs
MIN_EPOCHS, MAX_EPOCHS = 2, 30


class ImageClassifier(FeatureClassifier):
    """conv32 -> pool -> conv64 -> pool -> conv128 -> global average -> fc128 (features) -> fc K.
    The global average makes it work at any size >= 4 (4 .. 64 and up)."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, n_classes)


def features_home() -> Path:
    """$GANPIPE_HOME/features, else ~/.cache/ganpipe/features."""
    home = os.environ.get("GANPIPE_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "ganpipe") / "features"


def default_features_path(dataset: str, size: int, channels: int) -> Path:
    return features_home() / f"{dataset}-{size}x{channels}.pt"


def default_epochs(n_train: int) -> int:
    batches = max(1, math.ceil(n_train / BATCH))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / batches)))


def train_image_classifier(dataset, seed: int = DEFAULT_SEED, epochs: int | None = None,
                           device: str = "cpu", log=None) -> tuple[ImageClassifier, dict]:
    """Train on a fixed stratified 80 % of a labelled ImageFiles dataset; return (model in eval
    mode on the CPU, metadata without the weights' sha256). Seeded: same data, seed, device and
    thread count -> same weights."""
    if dataset.labels is None:
        raise ValueError(f"{dataset.name} at {dataset.root} has no labels (no class sub-folders): nothing to "
                         "train a classifier on; point eval.features at a classifier trained on labelled images")
    labels = dataset.labels
    n_classes = len(dataset.classes)
    if n_classes < 2 or len(torch.unique(labels)) < 2:
        raise ValueError(f"{dataset.name} at {dataset.root}: a classifier needs images of at least 2 classes")
    train_idx, test_idx = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)
    if len(test_idx) == 0:
        raise ValueError(f"{dataset.name}: too few images for a held-out split ({len(labels)})")
    epochs = epochs or default_epochs(len(train_idx))
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = ImageClassifier(dataset.shape[0], n_classes).to(dev)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=order)]
        for i in range(0, len(perm), BATCH):
            b = perm[i : i + BATCH]
            x, y = dataset.to_float(dataset.images[b]).to(dev), labels[b].to(dev)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.4f} {time.perf_counter() - t0:.0f}s")
    model = model.cpu().eval().requires_grad_(False)
    acc = _heldout_accuracy(model, dataset, test_idx)
    meta = {
        "arch_version": ARCH_VERSION,
        "dataset": dataset.name,
        "data_sha256": dataset.content_sha256,
        "n_images": len(labels),
        "n_train": len(train_idx),
        "n_heldout": len(test_idx),
        "image_size": dataset.shape[1],
        "channels": dataset.shape[0],
        "classes": list(dataset.classes),
        "seed": seed,
        "epochs": epochs,
        "heldout_accuracy": acc,
    }
    return model, meta


def _heldout_accuracy(model, dataset, idx: torch.Tensor) -> float:
    hits = 0
    for i in range(0, len(idx), 1024):
        b = idx[i : i + 1024]
        hits += accuracy(model, dataset.to_float(dataset.images[b]), dataset.labels[b]) * len(b)
    return hits / len(idx)


def save_image_classifier(model: ImageClassifier, meta: dict, path: str | Path) -> str:
    return save_weights(path, cpu_state(model), meta)


def read_metadata(path: str | Path) -> dict:
    """The file's metadata (everything but the weights); raises ValueError if it is not an
    image classifier file of this architecture or its weights do not match their sha256."""
    return read_weights(path, ARCH_VERSION, " (a file from `ganpipe features train`)")


_load_cached = cached_loader(read_metadata, lambda ckpt: ImageClassifier(ckpt["channels"], len(ckpt["classes"])),
                             maxsize=8)


def load_image_classifier(path: str | Path) -> ImageClassifier:
    """Loaded once per process and file version; `.metadata` holds the file's metadata."""
    return load_cached(_load_cached, path)


def train_and_save(dataset, out: str | Path | None = None, seed: int = DEFAULT_SEED, epochs: int | None = None,
                   device: str = "cpu", log=None) -> dict:
    """Train, save to `out` (default: the default cache location) and return
    {"path", "heldout_accuracy", "sha256", **metadata}."""
    model, meta = train_image_classifier(dataset, seed, epochs, device, log)
    c, s, _ = dataset.shape
    path = Path(out).expanduser() if out else default_features_path(dataset.name, s, c)
    if path.is_file() and log is not None:
        try:
            old = read_metadata(path).get("data_sha256")
        except ValueError:
            old = None
        if old != meta["data_sha256"]:  # the default file is named by dataset, size and channels only
            log(f"replacing {path}, a classifier of other data (data sha256 {old})")
    sha = save_image_classifier(model, meta, path)
    return {**meta, "path": str(path.resolve()), "sha256": sha}


# ---- before a run: does the classifier a dataset from files would be evaluated with exist and fit ----
def features_problem(name: str, root: str, size: int, channels: int, info, feat: str) -> str | None:
    """What is wrong with the feature classifier a dataset from files would be evaluated with (`info`: its
    ganpipe.data.files.Probe; `feat`: eval.features, "" = the default file), or None."""
    from ganpipe.config.schema import INCEPTION_NAMES

    if feat.lower() in INCEPTION_NAMES:
        return None  # the weights file is checked apart (ganpipe.metrics.inception.inception_problem)
    c, s, _ = info.shape
    path = Path(feat).expanduser() if feat else default_features_path(name, s, c)
    train = f"ganpipe features train {name} --set data.root={root}"
    train += (f" --set data.image_size={size}" if size else "") + (f" --set data.channels={channels}" if channels else "")
    train = f"train one with: {train}"
    if info.n_classes == 0:  # nothing to train on this data: say what else fits
        train = (f"an unlabelled image folder ({root} has no class sub-folders) cannot train one: point "
                 f"eval.features at a classifier trained elsewhere on labelled {s}x{s} images with {c} channel(s) "
                 f"(`ganpipe features train DATASET --set data.image_size={s} --out FILE`), or use "
                 "eval.features=inception")
    if not path.is_file():
        if info.n_classes == 0:
            return f"no feature classifier at {path}; {train}"
        return f"no feature classifier for {name} at {path}; {train}" + (f" --out {path}" if feat else "")
    try:
        meta = read_metadata(path)
    except ValueError as e:
        return str(e)
    if (meta["channels"], meta["image_size"]) != (c, s):
        return (f"{path} was trained on {meta['dataset']} at {meta['image_size']}x{meta['image_size']} with "
                f"{meta['channels']} channel(s), but the data is {s}x{s} with {c}; {train}")
    if info.n_classes and len(meta["classes"]) != info.n_classes:
        return (f"{path} tells {len(meta['classes'])} classes ({meta['dataset']}), the data has {info.n_classes}; "
                f"the class statistics need a classifier of the same classes; {train}")
    return None
