"""Standard image datasets read from a local `data.root`; nothing downloads.

    mnist, fashion-mnist   IDX files: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]
    cifar10                the python batches data_batch_1..5 (in root or root/cifar-10-batches-py)
    image-folder           png/jpg/jpeg/bmp/webp images; one sub-folder per class = labelled

`probe(...)` is the cheap check the file checks (ganpipe.preflight.files) run before anything
starts (headers and file listings only) and says what is wrong where; `load_files(...)` reads
everything once per process (cached by name, root, size, channels) into uint8 (N, C, H, W)
storage, and `ImageFiles.sample` converts only the drawn minibatch to float32 in [-1, 1].
The formats' readers are in ganpipe.data.formats.
"""
from __future__ import annotations

import hashlib
import pickle
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ganpipe.config.schema import FILE_DATASETS, supported_size  # validation knows both too
from ganpipe.data.base import Dataset
from ganpipe.data.formats import (
    WHAT,
    DataRootError,
    _load_cifar,
    _load_folder,
    _load_idx,
    _probe_cifar,
    _probe_folder,
    _probe_idx,
    _resize_all,
)

@dataclass(frozen=True)
class Probe:
    """What the cheap check learned: the sample shape after resizing, and the class count."""

    shape: tuple[int, int, int]  # (C, H, W) as the dataset will deliver it
    n_images: int  # 0 = not known from headers (CIFAR)
    n_classes: int  # 0 = unlabelled
    native_size: int


# ---- the cheap check and the cached load --------------------------------------------------
def native_channels(name: str) -> int:
    return 1 if name in ("mnist", "fashion-mnist") else 3


def probe(name: str, root: str, image_size: int = 0, channels: int = 0) -> Probe:
    """Check `root` cheaply (headers, listings) for dataset `name`; raise DataRootError saying
    what was expected where. Returns the shape the dataset will deliver."""
    if name not in FILE_DATASETS:
        raise ValueError(f"{name!r} is not read from files; valid: {', '.join(FILE_DATASETS)}")
    if not root:
        raise DataRootError(f"required for {name}: the folder with {WHAT[name]}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataRootError(f"{path} is not a folder (expected {WHAT[name]})")
    if name in ("mnist", "fashion-mnist"):
        n, native, _, _ = _probe_idx(name, path)
        n_classes = 10
    elif name == "cifar10":
        _probe_cifar(path)
        n, native, n_classes = 0, 32, 10  # 0: unknown until the batches are read (checked then)
    else:
        n, n_classes, native = _probe_folder(path, image_size)
    size = image_size or native
    if not supported_size(size):
        what = "native size" if not image_size else "data.image_size"
        raise DataRootError(f"{what} {size} is not one the networks can make (4 or 7 times a power of 2, "
                            "e.g. 8, 16, 28, 32, 64); set data.image_size", key="data.image_size")
    if name != "image-folder" and channels not in (0, native_channels(name)):
        raise DataRootError(f"{name} has {native_channels(name)} channel(s); use 0 (native) "
                            f"or {native_channels(name)}, got {channels}", key="data.channels")
    return Probe((channels or native_channels(name), size, size), n, n_classes, native)


def content_sha256(images: np.ndarray, labels: np.ndarray | None) -> str:
    """Root-independent identity of the data as trained on: shape, uint8 pixels, labels."""
    h = hashlib.sha256(f"{images.shape}|".encode())
    h.update(np.ascontiguousarray(images).data)
    if labels is not None:
        h.update(np.ascontiguousarray(labels.astype(np.int64)).data)
    return h.hexdigest()


@lru_cache(maxsize=8)
def load_files(name: str, root: str, image_size: int, channels: int):
    """(uint8 (N, C, S, S) tensor, int64 labels tensor or None, class names, content sha256);
    one read per process and (name, resolved root, size, channels)."""
    info = probe(name, root, image_size, channels)
    path = Path(root).expanduser()
    c, s, _ = info.shape
    try:
        if name in ("mnist", "fashion-mnist"):
            images, labels, classes = _load_idx(name, path)
        elif name == "cifar10":
            images, labels, classes = _load_cifar(path)
        else:
            images, labels, classes = _load_folder(path, s, c)
    except DataRootError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, pickle.UnpicklingError) as e:
        # what the cheap probe (headers, listings) cannot see: a damaged gzip stream, a cut-off file, ...
        raise DataRootError(f"{path}: cannot read {WHAT[name]}: {type(e).__name__}: {e}") from None
    images = _resize_all(images, s, c)
    sha = content_sha256(images, labels)
    labels_t = torch.from_numpy(np.ascontiguousarray(labels)) if labels is not None else None
    return torch.from_numpy(np.ascontiguousarray(images)), labels_t, classes, sha


@dataclass(frozen=True)
class ImageFiles(Dataset):
    """Images read from `root`, stored as uint8; sample() draws with replacement and scales
    to [-1, 1]; eval_real() is a fixed seeded subset (all images when n >= N)."""

    images: torch.Tensor = field(default=None, repr=False, compare=False)  # (N, C, H, W) uint8
    labels: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (N,) int64 or None
    classes: tuple[str, ...] = ()
    root: str = ""
    content_sha256: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).div_(127.5).sub_(1.0)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.to_float(self.images[torch.randint(len(self.images), (n,), generator=generator)])

    def eval_real(self, n: int, seed: int) -> torch.Tensor:
        return self.to_float(self.images[self.eval_indices(n, seed)])

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.labels is not None else 0

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.labels is None:
            return Dataset.sample_labelled(self, n, generator)
        idx = torch.randint(len(self.images), (n,), generator=generator)
        return self.to_float(self.images[idx]), self.labels[idx]

    def eval_real_labels(self, n: int, seed: int) -> torch.Tensor | None:
        return None if self.labels is None else self.labels[self.eval_indices(n, seed)]

    def eval_indices(self, n: int, seed: int) -> torch.Tensor:
        if n >= len(self.images):
            return torch.arange(len(self.images))
        return torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))[:n].sort().values


def image_files(name: str, root: str, image_size: int = 0, channels: int = 0) -> ImageFiles:
    root = str(Path(root).expanduser().resolve()) if root else root
    images, labels, classes, sha = load_files(name, root, image_size, channels)
    return ImageFiles(name, "images", tuple(images.shape[1:]), len(classes), images=images, labels=labels,
                      classes=classes, root=root, content_sha256=sha)
