"""Image datasets read from a local root (IDX, CIFAR batches, an image folder): loading,
the data as a sweep loads it (its cheap checks: tests/test_preflight.py), the feature classifier and a
whole trial. Every file here is tiny and written by the test itself."""
from __future__ import annotations

import gzip
import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ganpipe import cli
from ganpipe.config import ConfigError
from ganpipe.config.schema import DataConfig
from ganpipe.data import get_dataset
from ganpipe.data.files import load_files
from ganpipe.metrics import Evaluator
from ganpipe.metrics.features import FeaturesMissing
from ganpipe.preflight import load_checked_sweep

N_IDX = 40  # 4 per class


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x800 | arr.ndim  # unsigned bytes
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def idx_arrays(n: int = N_IDX, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright square whose position depends on k, on faint noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    images = rng.integers(0, 40, (n, size, size), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = (k // 5) * 12 + 2, (k % 5) * 5 + 1
        images[i, r : r + 10, c : c + 4] = 255
    return images, labels.astype(np.uint8)


def write_idx(folder: Path, gz: bool, n: int = N_IDX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = idx_arrays(n)
    for stem, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def write_cifar(folder: Path, per_batch: int = 4) -> Path:
    """The real format: pickled dicts with b"data" (N, 3072) uint8 rows (R, G, B planes) and b"labels"."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for b in range(1, 6):
        batch = {b"batch_label": f"training batch {b} of 5".encode(),
                 b"labels": [int(x) for x in (np.arange(per_batch) + b) % 10],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [b"x.png"] * per_batch}
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 5, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(2)
    for k, name in enumerate(classes):
        d = root / name if name else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            arr[..., k % 3] = 255
            Image.fromarray(arr).save(d / f"{i}.png")
    return root


def sweep_file(folder: Path, data: dict, **extra) -> Path:
    cfg = {"name": "files", "data": data, "model": {"architecture": "dcgan", "latent_dim": 8, "width": 4},
           "train": {"steps": 20, "batch_size": 16}, "eval": {"every": 20, "num_samples": 64}, **extra}
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def problems(path: Path, overrides=()) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        load_checked_sweep(path, list(overrides))
    return [(p.key, p.message) for p in err.value.problems]


# ---- loaders ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_gz_and_raw_give_the_images_and_labels(tmp_path, gz):
    root = write_idx(tmp_path / "mnist", gz)
    ds = get_dataset(DataConfig("mnist", root=str(root)))
    images, labels = idx_arrays()
    assert (ds.name, ds.kind, ds.shape, ds.n_modes) == ("mnist", "images", (1, 28, 28), 10)
    assert ds.images.dtype == torch.uint8 and torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    x = ds.sample(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert x.max() == 1 and x.min() < -0.5
    assert torch.equal(ds.eval_real(10, 3), ds.eval_real(10, 3)) and ds.eval_real(10, 3).shape == (10, 1, 28, 28)
    assert ds.eval_real(1000, 3).shape == (N_IDX, 1, 28, 28)  # n >= N: all of them
    assert get_dataset(DataConfig("mnist", root=str(root))).images is ds.images  # loaded once


def test_idx_resized_and_fashion_mnist(tmp_path):
    root = write_idx(tmp_path / "f", gz=True)
    ds = get_dataset(DataConfig("fashion-mnist", root=str(root), image_size=16))
    assert ds.shape == (1, 16, 16) and ds.images.shape == (N_IDX, 1, 16, 16) and ds.n_modes == 10
    x = ds.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 16, 16) and -1 <= x.min() and x.max() <= 1


def test_cifar_batches_in_root_or_subfolder(tmp_path):
    write_cifar(tmp_path / "c" / "cifar-10-batches-py")
    ds = get_dataset(DataConfig("cifar10", root=str(tmp_path / "c")))
    assert ds.shape == (3, 32, 32) and ds.images.shape == (20, 3, 32, 32) and ds.n_modes == 10
    first = pickle.loads((tmp_path / "c" / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert np.array_equal(ds.images[0].numpy().reshape(-1), first[b"data"][0])  # channel planes kept
    assert ds.labels[:4].tolist() == [1, 2, 3, 4]
    small = get_dataset(DataConfig("cifar10", root=str(tmp_path / "c" / "cifar-10-batches-py"), image_size=8))
    assert small.images.shape == (20, 3, 8, 8)


def test_image_folder_labelled_unlabelled_grey_and_resized(tmp_path):
    root = write_folder(tmp_path / "pets")
    ds = get_dataset(DataConfig("image-folder", root=str(root)))
    assert ds.shape == (3, 8, 8) and ds.n_modes == 2 and ds.classes == ("cat", "dog")
    assert ds.labels.tolist() == [0] * 5 + [1] * 5
    assert (ds.images[:5, 0] == 255).all() and (ds.images[5:, 1] == 255).all()  # RGB order kept
    grey = get_dataset(DataConfig("image-folder", root=str(root), image_size=16, channels=1))
    assert grey.shape == (1, 16, 16) and grey.images.shape == (10, 1, 16, 16)
    flat = get_dataset(DataConfig("image-folder", root=str(write_folder(tmp_path / "flat", classes=("",)))))
    assert flat.labels is None and flat.n_modes == 0 and flat.shape == (3, 8, 8)


# ---- the feature classifier, the evaluator and a trial -----------------------------------------
def test_features_train_evaluator_and_trial_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANPIPE_HOME", str(tmp_path / "home"))
    root = write_idx(tmp_path / "mnist", gz=True)
    assert cli.main(["features", "train", "mnist", "--set", f"data.root={root}", "--epochs", "3"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "home" / "features" / "mnist-28x1.pt"
    assert f"wrote {path}" in printed and "30 train / 10 held-out images, 10 classes, 28x28x1" in printed
    meta = torch.load(path, weights_only=True)
    assert (meta["dataset"], meta["image_size"], meta["channels"], len(meta["classes"])) == ("mnist", 28, 1, 10)
    assert len(meta["data_sha256"]) == 64 and len(meta["sha256"]) == 64

    ds = get_dataset(DataConfig("mnist", root=str(root)))
    ev = Evaluator(ds, num_samples=20)
    metrics = ev.evaluate(ds.eval_real(20, 5))
    assert all(math.isfinite(metrics[k]) for k in ("fid", "diversity", "modes", "kl", "coverage"))
    assert metrics["diversity"] == metrics["coverage"] and 1 <= metrics["modes"] <= 10
    assert ev.protocol["features"]["sha256"] == meta["sha256"] and ev.protocol["data"]["sha256"] == meta["data_sha256"]
    with pytest.raises(FeaturesMissing, match="no feature classifier"):
        Evaluator(get_dataset(DataConfig("mnist", root=str(root), image_size=16)))

    # bad input to features train: exit 2 before any training
    assert cli.main(["features", "train", "mnist"]) == 2
    assert cli.main(["features", "train", "mnist", "--set", f"data.root={tmp_path / 'nope'}"]) == 2
    flat = write_folder(tmp_path / "flat", classes=("",))
    assert cli.main(["features", "train", "image-folder", "--set", f"data.root={flat}"]) == 2
    assert "no labels" in capsys.readouterr().err

    out = tmp_path / "trial"
    assert cli.main(["trial", str(sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)})),
                     "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and result["step"] == 20
    assert all(math.isfinite(result["metrics"][k]) for k in ("fid", "diversity", "modes"))
    assert result["protocol"]["dataset"] == "mnist" and result["protocol"]["n_real"] == N_IDX
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["root"] == str(root)

    # the default classifier file is named by dataset, size and channels only: other MNIST files of the same
    # size must not be judged in its feature space without a word
    other = tmp_path / "mnist-other"
    other.mkdir()
    images, labels = idx_arrays()
    (other / "train-images-idx3-ubyte").write_bytes(idx_bytes(255 - images))
    (other / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    capsys.readouterr()
    assert cli.main(["trial", str(sweep_file(tmp_path, {"dataset": "mnist", "root": str(other)})),
                     "--out", str(tmp_path / "trial-other")]) == 2
    err = capsys.readouterr().err
    assert f"eval.features: {path} was trained on other data than {other}" in err
    assert f"ganpipe features train mnist --set data.root={other}" in err
    assert not (tmp_path / "trial-other").exists()
    assert cli.main(["features", "train", "mnist", "--set", f"data.root={other}", "--epochs", "1"]) == 0
    assert f"replacing {path}, a classifier of other data" in capsys.readouterr().out


def test_data_that_cannot_be_read_is_bad_input_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """What the cheap header probe cannot see (a damaged gzip stream, labels out of range) only shows when the
    data is read: `ganpipe trial` and `ganpipe sweep` read it before any output folder or MLflow run exists."""
    monkeypatch.setenv("GANPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    good = write_idx(tmp_path / "good", gz=True)  # its classifier passes validation (which only sees the file)
    assert cli.main(["features", "train", "mnist", "--set", f"data.root={good}", "--epochs", "1"]) == 0
    damaged = write_idx(tmp_path / "damaged", gz=True)
    gz = damaged / "train-images-idx3-ubyte.gz"
    raw = bytearray(gz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # mid-stream: header and trailer intact
    gz.write_bytes(bytes(raw))
    labels = tmp_path / "labels"
    labels.mkdir()
    images, lab = idx_arrays()
    (labels / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (labels / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.where(lab == 3, 200, lab)))
    for root, expect in ((damaged, "cannot read the MNIST IDX files"), (labels, "label 200 outside 0..9")):
        path = sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)})
        assert cli.main(["trial", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"{path}: data.root: " in err and expect in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
        assert cli.main(["sweep", str(path), "--dry-run"]) == 2  # the sweep's preflight, before Ray or MLflow
        assert expect in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()

    # an image whose header reads fine but whose pixel data is damaged: PIL fails only when decoding it
    pets = write_folder(tmp_path / "pets", size=32)
    broken = pets / "dog" / "1.png"
    raw = bytearray(broken.read_bytes())
    at = raw.index(b"IDAT") + 12
    raw[at : at + 16] = b"\x00" * 16
    broken.write_bytes(bytes(raw))
    from ganpipe.data.files import DataRootError

    with pytest.raises(DataRootError, match=f"{broken} is not a readable image"):
        get_dataset(DataConfig("image-folder", root=str(pets)))


def test_unlabelled_folder_is_evaluated_with_a_classifier_trained_elsewhere(tmp_path):
    from ganpipe.metrics.features_cli import train_features

    pets = write_folder(tmp_path / "pets")
    info = train_features(DataConfig("image-folder", root=str(pets)), str(tmp_path / "pets.pt"), epochs=2)
    assert info["classes"] == ["cat", "dog"] and 0 <= info["heldout_accuracy"] <= 1
    flat = write_folder(tmp_path / "flat", classes=("",), per_class=12)
    sweep = load_checked_sweep(sweep_file(tmp_path, {"dataset": "image-folder", "root": str(flat)},
                                  eval={"features": info["path"]}))
    ds = get_dataset(sweep.trial.data)
    with pytest.warns(UserWarning, match="has 12 images, fewer than the .* feature dimensions"):  # FID biased
        ev = Evaluator(ds, num_samples=12, features=sweep.trial.eval.features)
    metrics = ev.evaluate(ds.eval_real(12, 0))
    assert ev.n_modes == 2 and metrics["diversity"] == metrics["coverage"] and math.isfinite(metrics["fid"])
    grey = problems(sweep_file(tmp_path, {"dataset": "image-folder", "root": str(flat), "channels": 1},
                               eval={"features": info["path"]}))
    assert grey[0][0] == "eval.features" and "with 3 channel(s), but the data is 8x8 with 1" in grey[0][1]


def test_builtin_names_still_work_and_cache_is_per_size(tmp_path):
    assert get_dataset("ring8").shape == (2,)
    with pytest.raises(ValueError, match="give data.root"):
        get_dataset("mnist")
    root = write_idx(tmp_path / "m", gz=False)
    load_files.cache_clear()
    get_dataset(DataConfig("mnist", root=str(root)))
    get_dataset(DataConfig("mnist", root=str(root), image_size=8))
    assert load_files.cache_info().currsize == 2
