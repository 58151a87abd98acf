"""The on-disk formats of the datasets read from files: IDX (MNIST, Fashion-MNIST), the CIFAR-10 python
batches, a folder of images; each with a cheap probe (headers, listings) and a full read to uint8
(N, C, H, W). ganpipe.data.files builds the datasets on these.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
IDX_IMAGES, IDX_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS = 0x00000803, 0x00000801  # unsigned byte, 3 resp. 1 dimensions
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_SUBDIR = "cifar-10-batches-py"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
WHAT = {
    "mnist": "the MNIST IDX files",
    "fashion-mnist": "the Fashion-MNIST IDX files",
    "cifar10": "the CIFAR-10 python batches",
    "image-folder": "a folder of images",
}


class DataRootError(ValueError):
    """A data root that cannot be read as the dataset; `key` is the config key to blame."""

    def __init__(self, message: str, key: str = "data.root"):
        super().__init__(message)
        self.key = key


# ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------
def _idx_file(root: Path, stem: str, name: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataRootError(f"no {stem}[.gz] in {root} (expected {WHAT[name]})")


def _idx_header(path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    """The dimensions of an IDX file, checking its magic number and its length (for .gz: the
    uncompressed size recorded in the gzip trailer, so no decompression is needed)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
    except (OSError, EOFError) as e:
        raise DataRootError(f"cannot read {path}: {e}")
    if len(head) < 4 + 4 * ndim:
        raise DataRootError(f"{path} is truncated: {len(head)} bytes, shorter than an IDX header")
    got = struct.unpack(">I", head[:4])[0]
    if got != magic:
        raise DataRootError(f"{path}: bad magic number 0x{got:08x}, expected 0x{magic:08x} "
                            f"(an IDX file of unsigned bytes with {ndim} dimension{'s' if ndim > 1 else ''})")
    dims = struct.unpack(f">{ndim}I", head[4:])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if path.suffix == ".gz":
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            size = struct.unpack("<I", f.read(4))[0]  # ISIZE: uncompressed length mod 2^32
        if size != expected % 2**32:
            raise DataRootError(f"{path} is truncated or damaged: the header promises {expected} bytes "
                                f"uncompressed, the gzip trailer says {size}")
    else:
        size = path.stat().st_size
        if size != expected:
            raise DataRootError(f"{path} is truncated: {size} bytes, the header {dims} needs {expected}")
    return dims


def _probe_idx(name: str, root: Path) -> tuple[int, int, int, int]:
    """(n, rows, cols, n_labels) from the headers."""
    images = _idx_file(root, IDX_IMAGES, name)
    labels = _idx_file(root, IDX_LABELS, name)
    n, rows, cols = _idx_header(images, IDX_MAGIC_IMAGES, 3)
    (n_labels,) = _idx_header(labels, IDX_MAGIC_LABELS, 1)
    if n_labels != n:
        raise DataRootError(f"{labels} holds {n_labels} labels but {images} holds {n} images")
    if rows != cols:
        raise DataRootError(f"{images}: images are {rows}x{cols}, expected square images")
    return n, rows, cols, n_labels


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)  # writable


def _load_idx(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    _probe_idx(name, root)
    images = _read_idx(_idx_file(root, IDX_IMAGES, name), 3)[:, None]  # (N, 1, H, W)
    labels = _read_idx(_idx_file(root, IDX_LABELS, name), 1).astype(np.int64)
    if labels.max(initial=0) > 9:
        raise DataRootError(f"{_idx_file(root, IDX_LABELS, name)}: label {labels.max()} outside 0..9")
    return images, labels, tuple(str(i) for i in range(10))


# ---- CIFAR-10 python batches --------------------------------------------------------------
def _cifar_dir(root: Path) -> Path:
    for candidate in (root, root / CIFAR_SUBDIR):
        if (candidate / CIFAR_BATCHES[0]).is_file():
            return candidate
    raise DataRootError(f"no data_batch_1 in {root} or {root / CIFAR_SUBDIR} (expected {WHAT['cifar10']})")


def _probe_cifar(root: Path) -> Path:
    folder = _cifar_dir(root)
    missing = [b for b in CIFAR_BATCHES if not (folder / b).is_file()]
    if missing:
        raise DataRootError(f"{folder}: missing {', '.join(missing)} (expected {WHAT['cifar10']}: "
                            f"{', '.join(CIFAR_BATCHES)})")
    return folder


class _NumpyOnly(pickle.Unpickler):
    """The CIFAR batches are pickles of dicts of numpy arrays and lists: allow nothing else,
    so a stray file in `root` cannot run code when it is read."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    folder = _probe_cifar(root)
    images, labels = [], []
    for b in CIFAR_BATCHES:
        path = folder / b
        try:
            with open(path, "rb") as f:
                batch = _NumpyOnly(f, encoding="bytes").load()
            data = np.asarray(batch.get(b"data", batch.get("data")), dtype=np.uint8)
            lab = np.asarray(batch.get(b"labels", batch.get("labels")), dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
                raise ValueError(f"data {data.shape}, labels {lab.shape}; expected (N, 3072) and (N,)")
        except Exception as e:  # noqa: BLE001 - anything wrong with a batch is a bad root
            raise DataRootError(f"{path} is not a CIFAR-10 python batch: {e}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels), CIFAR_CLASSES


# ---- a folder of images ---------------------------------------------------------------------
def _images_in(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_listing(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(files, labels or [], class names or ()) of an image folder."""
    top = _images_in(root, recursive=False)
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    per_class = [(d.name, _images_in(d, recursive=True)) for d in classes]
    per_class = [(n, files) for n, files in per_class if files]
    if per_class and top:
        raise DataRootError(f"{root} has both images at the top ({top[0].name}, ...) and class sub-folders "
                            f"({', '.join(n for n, _ in per_class)}); use one or the other")
    if per_class:
        files, labels = [], []
        for i, (_, fs) in enumerate(per_class):
            files += fs
            labels += [i] * len(fs)
        return files, labels, tuple(n for n, _ in per_class)
    if not top:
        raise DataRootError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in {root} or its "
                            f"sub-folders (expected {WHAT['image-folder']}, optionally one sub-folder per class)")
    return top, [], ()


def _probe_folder(root: Path, image_size: int) -> tuple[int, int, int]:
    """(n images, n classes, native size); opens every image's header (PIL reads lazily)."""
    from PIL import Image, UnidentifiedImageError

    files, _, classes = _folder_listing(root)
    sizes = set()
    for path in files:
        try:
            with Image.open(path) as im:
                sizes.add(im.size)
        except (OSError, UnidentifiedImageError) as e:
            raise DataRootError(f"{path} is not a readable image: {e}")
        if image_size == 0 and len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise DataRootError(f"{root}: images of different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); "
                                "set data.image_size to resize them all", key="data.image_size")
    w, h = next(iter(sizes))
    if image_size == 0 and w != h:
        raise DataRootError(f"{root}: images are {w}x{h}, not square; set data.image_size "
                            "(they are then center-cropped to a square and resized)", key="data.image_size")
    return len(files), len(classes), min(w, h)


def _load_folder(root: Path, size: int, channels: int) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    from PIL import Image

    files, labels, classes = _folder_listing(root)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                out[i] = _to_array(_square(im.convert(mode)), size, channels)
        except Exception as e:  # noqa: BLE001 - PIL decodes lazily and fails in many ways (even SyntaxError)
            raise DataRootError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
    return out, (np.asarray(labels, dtype=np.int64) if classes else None), classes


# ---- resizing -------------------------------------------------------------------------------
def _square(im):
    """Center crop to a square (a no-op for square images)."""
    w, h = im.size
    if w == h:
        return im
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return im.crop((left, top, left + s, top + s))


def _to_array(im, size: int, channels: int) -> np.ndarray:
    """PIL image -> (C, size, size) uint8; area-like (box) resampling when shrinking, bilinear when enlarging."""
    from PIL import Image

    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BOX if im.size[0] > size else Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _resize_all(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, channels, size, size) uint8 (also 1 <-> 3 channels)."""
    from PIL import Image

    n, c, h, _ = images.shape
    if h == size and c == channels:
        return images
    out = np.empty((n, channels, size, size), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i in range(n):
        im = Image.fromarray(images[i, 0] if c == 1 else images[i].transpose(1, 2, 0))
        out[i] = _to_array(im.convert(mode), size, channels)
    return out
