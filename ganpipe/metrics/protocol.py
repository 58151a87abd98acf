"""The fixed evaluation protocol: same real set, same latent batch, same feature space at
every eval of every trial, so FIDs compare across trials and sweeps (only under equal
`Evaluator.protocol` dicts).

    ev = Evaluator(get_dataset("ring8"))
    z = fixed_latents(ev.num_samples, latent_dim)      # same z at every eval
    metrics = ev.evaluate(generator(z))                # {"fid": ..., "diversity": ..., ...}

Class-conditional generators are judged on balanced fixed labels (Evaluator(..., conditional=True)):
    y = fixed_labels(ev.num_samples, n_classes)
    metrics = ev.evaluate(generator(z, y), labels=y)   # + class_accuracy, intra_fid, fid_class_K, ...
"""
from __future__ import annotations

import copy
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from ganpipe.config.validate import INCEPTION_NAMES
from ganpipe.data import Dataset, get_dataset
from ganpipe.metrics.fid import frechet_distance_from_stats, gaussian_stats
from ganpipe.metrics.modes import label_mode_stats, point_mode_stats
from ganpipe.metrics.names import BASE
from ganpipe.metrics.prdc import knn_radii, prdc

PROTOCOL_VERSION = 1
PROTOCOL_SEED = 8191  # root of every protocol seed; change it and PROTOCOL_VERSION together
LATENT_SEED = PROTOCOL_SEED  # fixed_latents
REAL_SEED = PROTOCOL_SEED + 1  # dataset.eval_real
K = 5  # k of the k-NN balls of precision / recall / density / coverage

# dataset kind/name -> (n_real, n_fake); digits' real side is the whole dataset (eval_real)
DEFAULT_SIZES = {"points": (2500, 2500), "digits": (1797, 2000), "stacked-digits": (10000, 10000)}
FILES_SIZES = (10000, 10000)  # datasets read from files: up to 10k real images (a fixed subset), 10k generated
POINT_KEYS = BASE
IMAGE_KEYS = POINT_KEYS[:-1]


def fixed_labels(n: int, n_classes: int) -> torch.Tensor:
    """(n,) int64 class labels 0, 1, ..., n_classes - 1, 0, 1, ...: every class equally often."""
    return torch.arange(n, dtype=torch.int64) % n_classes


def fixed_latents(n: int, latent_dim: int) -> torch.Tensor:
    """(n, latent_dim) float32 standard normal z, identical at every call, whatever the global RNG."""
    g = torch.Generator().manual_seed(LATENT_SEED)
    return torch.randn(n, latent_dim, generator=g)


@contextmanager
def full_float32(device: torch.device):
    """TF32 off for CUDA convolutions and matrix products while evaluating (cuDNN defaults convolutions to
    TF32's 10-bit mantissa): features and distances then agree with the CPU's to float32 round-off, so the
    protocol's numbers compare between trials evaluated on a GPU and on a CPU."""
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


# ---- feature extractors: (N, *shape) float32 -> ((N, d) features, (N,) mode labels | None)
# `.to(device)` moves an extractor's own copy of its network; inputs must be on that device.

class _PointFeatures:
    """2-D toy data: the raw coordinates are the features; modes come from the centers."""

    name, sha256 = "raw-2d", None

    def to(self, device: torch.device) -> "_PointFeatures":
        return self

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


class _ModelFeatures:
    """Penultimate layer and argmax class of a FeatureClassifier, on a private channels-last copy
    (~2x faster CPU convolutions; the shared, cached model stays as loaded)."""

    chunk = 2048  # images per forward pass: cache-sized activations ran fastest on CPU

    def __init__(self, shared, name: str | None = None) -> None:
        self.name = name or shared.metadata["arch_version"]
        self.sha256 = shared.metadata["sha256"]
        self.model = copy.deepcopy(shared).to(memory_format=torch.channels_last)

    def to(self, device: torch.device) -> "_ModelFeatures":
        self.model = self.model.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        feats, labels = [], []
        for i in range(0, len(x), self.chunk):
            f, logits = self.model.features_and_logits(x[i : i + self.chunk])
            feats.append(f)
            labels.append(logits.argmax(dim=1))
        return torch.cat(feats), torch.cat(labels)


class _DigitsFeatures(_ModelFeatures):
    """The shipped digits classifier."""

    def __init__(self) -> None:
        from ganpipe.metrics.digits_classifier import load_digits_classifier

        super().__init__(load_digits_classifier())


class _StackedFeatures(_DigitsFeatures):
    """Digits classifier per channel: features (N, 3 * 64) concatenated, mode 100a + 10b + c."""

    def __init__(self) -> None:
        super().__init__()
        self.name = self.name + "-per-channel"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c = x.shape[:2]
        feats, labels = super().__call__(x.reshape(n * c, 1, *x.shape[2:]))
        labels = labels.reshape(n, c)
        return feats.reshape(n, -1), labels[:, 0] * 100 + labels[:, 1] * 10 + labels[:, 2]


class FeaturesMissing(FileNotFoundError):
    """No usable feature network for a dataset read from files (the message says how to get one);
    `key` is the config key to blame."""

    def __init__(self, message: str, key: str = "eval.features"):
        super().__init__(message)
        self.key = key


class _ClassifierFeatures(_ModelFeatures):
    """Penultimate layer and argmax class of a classifier from `ganpipe features train`."""

    def __init__(self, dataset, path: str | None) -> None:
        from ganpipe.config.validate import features_problem
        from ganpipe.data.files import Probe
        from ganpipe.metrics.image_classifier import default_features_path, load_image_classifier

        c, s, _ = dataset.shape
        info = Probe(dataset.shape, len(dataset), dataset.n_modes, s)
        problem = features_problem(dataset.name, dataset.root, s, 0, info, path or "")
        if problem:
            raise FeaturesMissing(problem)
        default = str(default_features_path(dataset.name, s, c))
        shared = load_image_classifier(path or default)
        meta = shared.metadata
        if not path and meta.get("data_sha256") != dataset.content_sha256:
            # the default file is named by dataset, size and channels only: another folder's (or this one's
            # before its files changed) would give FIDs in the wrong feature space without a word
            fix = (f"train one for it: ganpipe features train {dataset.name} --set data.root={dataset.root} "
                   f"--set data.image_size={s} --set data.channels={c}, or name the classifier you mean in "
                   "eval.features") if info.n_classes else (
                   "an unlabelled folder cannot train one: name the classifier you mean in eval.features, "
                   "or use eval.features=inception")
            raise FeaturesMissing(
                f"{default} was trained on other data than {dataset.root} (data sha256 {meta.get('data_sha256')}, "
                f"this data {dataset.content_sha256}); {fix}")
        path = path or default
        super().__init__(shared, name=f"{meta['arch_version']}:{meta['dataset']}")
        self.path = path
        self.n_classes = len(meta["classes"])


class _InceptionFeatures:
    """The standard FID Inception pool features (2048-d); no classes, so no mode statistics."""

    chunk = 64  # 299x299 activations: ~0.5 GB per 64 images
    n_classes = 0

    def __init__(self, weights: str | None) -> None:
        from ganpipe.metrics.inception import NAME, InceptionWeightsMissing, load_fid_inception

        try:
            self.model, self.sha256 = load_fid_inception(weights)
        except (InceptionWeightsMissing, ValueError) as e:  # missing, or not the weights torch can read
            raise FeaturesMissing(str(e), key="eval.inception_weights") from None
        self.name = NAME

    def to(self, device: torch.device) -> "_InceptionFeatures":
        if device.type != "cpu":  # the loaded network is shared by the process: move a copy
            self.model = copy.deepcopy(self.model).to(device)
        return self

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([self.model(x[i : i + self.chunk]) for i in range(0, len(x), self.chunk)]), None


def check_features(dataset: Dataset, features: str | None = None, inception_weights: str | None = None) -> None:
    """Load the evaluation's feature network for `dataset` (cached per process); FeaturesMissing if it cannot be."""
    _extractor(dataset, features, inception_weights)


def _extractor(dataset: Dataset, features: str | None = None, inception_weights: str | None = None):
    if hasattr(dataset, "content_sha256"):  # read from files: a classifier trained on such data, or Inception
        if features and features.lower() in INCEPTION_NAMES:
            return _InceptionFeatures(inception_weights)
        return _ClassifierFeatures(dataset, features)
    if features:
        raise ValueError(f"eval.features is only for datasets read from files; {dataset.name} has its own features")
    if dataset.kind == "points" and hasattr(dataset, "centers"):
        return _PointFeatures()
    if dataset.name == "digits":
        return _DigitsFeatures()
    if dataset.name == "stacked-digits":
        return _StackedFeatures()
    raise ValueError(f"no evaluation protocol for dataset {dataset.name!r}; valid: ring8, grid25, digits, stacked-digits, "
                     "and the datasets read from files")


# ---- real statistics, computed once per process

@dataclass(frozen=True)
class _RealStats:
    feats: torch.Tensor  # (n_real, d)
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64
    radii: torch.Tensor  # (n_real,) k-NN radii, self excluded

    def to(self, device: torch.device) -> "_RealStats":
        if self.feats.device == device:  # the process-wide cached object itself
            return self
        return replace(self, feats=self.feats.to(device), radii=self.radii.to(device))


_REAL_CACHE: dict[tuple, _RealStats] = {}
_REAL_CLASS_CACHE: dict[tuple, dict[int, _RealStats]] = {}


def _stats_of(feats: torch.Tensor) -> _RealStats:
    mu, sigma = gaussian_stats(feats)
    return _RealStats(feats, mu, sigma, knn_radii(feats, K))


def _real_stats(real: torch.Tensor, extractor) -> _RealStats:
    feats, _ = extractor(real.to(torch.float32))
    return _stats_of(feats)


def _per_class(stats: _RealStats, labels: torch.Tensor, n_classes: int) -> dict[int, _RealStats]:
    """The real statistics of each class (for intra-FID and per-class coverage)."""
    return {c: _stats_of(stats.feats[labels == c]) for c in range(n_classes)}


class Evaluator:
    """Metrics of generated samples under the dataset's fixed protocol.

    dataset:     a Dataset (e.g. from get_dataset(DataConfig(...))) or a built-in dataset's name.
    num_samples: generated samples per eval; 0 = the dataset's default (2500 / 2000 / 10000).
                 The real side keeps its default size.
    real:        (n, *shape) override of the real set (tests, ablations); not cached, and
                 `protocol["real"]` says "custom" so its numbers are never mixed with the default.
    features:    datasets read from files only: the classifier file (`ganpipe features train`);
                 None = the default location (image_classifier.default_features_path).
                 Raises FeaturesMissing when there is none.
    inception_weights: with features="inception": the weights file; None = the torch hub cache
                 ($TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth). Never downloads.
    conditional: judge a class-conditional G: `evaluate(fake, labels=fixed_labels(...))` adds
                 class_accuracy (the classifier agrees with the label asked for), intra_fid (the
                 mean per-class FID, Miyato & Koyama 2018) and fid_class_K / coverage_class_K.
    device:      where features and k-NN distances are computed (a trial's own GPU: a CPU would take
                 seconds per Stacked-digits evaluation). Real statistics are computed once per process
                 on the CPU, so every device compares against the same numbers; TF32 is off (full_float32).
    """

    def __init__(self, dataset: Dataset | str, num_samples: int = 0, *, real: torch.Tensor | None = None,
                 features: str | None = None, inception_weights: str | None = None,
                 conditional: bool = False, device: str | torch.device = "cpu") -> None:
        self.dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
        self.device = torch.device(device)
        self._extractor = _extractor(self.dataset, features, inception_weights)
        self._files = isinstance(self._extractor, (_ClassifierFeatures, _InceptionFeatures))
        if self._files:
            n_real, n_fake = min(FILES_SIZES[0], len(self.dataset)), FILES_SIZES[1]
        else:
            size_key = "points" if self.dataset.kind == "points" else self.dataset.name
            n_real, n_fake = DEFAULT_SIZES[size_key]
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0 (0 = default {n_fake}), got {num_samples}")
        self._n_fake = num_samples or n_fake
        if real is not None:
            self._custom_real = True
            self._real = _real_stats(real, self._extractor)
        else:
            self._custom_real = False
            real_set = self.dataset.eval_real(n_real, REAL_SEED)
            key = (self.dataset.name, len(real_set), REAL_SEED, self._extractor.name, self._extractor.sha256,
                   getattr(self.dataset, "content_sha256", None))
            if key not in _REAL_CACHE:
                _REAL_CACHE[key] = _real_stats(real_set, self._extractor)
            self._real = _REAL_CACHE[key]
        n, d = self._real.feats.shape
        if self._files and n < d:
            warnings.warn(f"{self.dataset.name} at {getattr(self.dataset, 'root', '')} has {n} images, fewer than the "
                          f"{d} feature dimensions: the real covariance is singular, so FID is biased high; compare "
                          "its FIDs only with each other's", stacklevel=2)
        self.n_classes = self.dataset.n_classes if conditional else 0
        if conditional:
            self._init_conditional(n_real, key if real is None else None)
        self._extractor.to(self.device)
        self._real = self._real.to(self.device)
        if conditional:
            self._real_by_class = {c: stats.to(self.device) for c, stats in self._real_by_class.items()}

    def _init_conditional(self, n_real: int, cache_key: tuple | None) -> None:
        ds, n_classes = self.dataset, self.n_classes
        if n_classes < 2:
            raise ValueError(f"conditional evaluation needs labelled data; {ds.name} has no class labels")
        if self._custom_real:
            raise ValueError("conditional evaluation uses the protocol's real set (and its labels); drop `real`")
        if isinstance(self._extractor, _InceptionFeatures):
            raise ValueError("conditional evaluation needs a classifier of the data's classes (class accuracy); "
                             "Inception features have none: use the dataset's feature classifier")
        if self.n_modes != n_classes:
            raise ValueError(f"the feature classifier tells {self.n_modes} classes, {ds.name} has {n_classes}")
        if self._n_fake < (K + 1) * n_classes:
            raise ValueError(f"eval.num_samples must be at least {(K + 1) * n_classes} for {n_classes} classes "
                             f"(more than k={K} per class for per-class coverage), got {self._n_fake}")
        real_labels = ds.eval_real_labels(n_real, REAL_SEED)
        counts = torch.bincount(real_labels, minlength=n_classes)
        if int(counts.min()) <= K:
            raise ValueError(f"class {int(counts.argmin())} of {ds.name} has {int(counts.min())} images in the "
                             f"evaluation's real set; per-class statistics need more than {K}")
        if cache_key not in _REAL_CLASS_CACHE:
            _REAL_CLASS_CACHE[cache_key] = _per_class(self._real, real_labels, n_classes)
        self._real_by_class = _REAL_CLASS_CACHE[cache_key]

    @property
    def num_samples(self) -> int:
        """How many generated samples `evaluate` expects (use fixed_latents(num_samples, ...))."""
        return self._n_fake

    @property
    def n_modes(self) -> int:
        """What `modes` counts up to: the dataset's modes, or the classifier's classes for unlabelled data."""
        return self.dataset.n_modes or getattr(self._extractor, "n_classes", 0)

    @property
    def protocol(self) -> dict:
        """JSON-able description; compare FIDs only between equal protocol dicts."""
        extra = {}
        if self._files:  # the data itself (not where it lies): FIDs on other data never compare
            c, s, _ = self.dataset.shape
            extra = {"data": {"sha256": self.dataset.content_sha256, "n_images": len(self.dataset),
                              "image_size": s, "channels": c}}
        return {
            "version": PROTOCOL_VERSION,
            "dataset": self.dataset.name,
            "n_real": len(self._real.feats),
            "n_fake": self._n_fake,
            "features": {"name": self._extractor.name, "sha256": self._extractor.sha256},
            "k": K,
            "seeds": {"latent": LATENT_SEED, "real": REAL_SEED},
            "real": "custom" if self._custom_real else "protocol",
            **extra,
            # balanced labels: FIDs of a conditional G never compare with an unconditional one's
            **({"conditional": {"labels": "balanced", "n_classes": self.n_classes}} if self.n_classes else {}),
        }

    def _base_keys(self) -> tuple[str, ...]:
        if isinstance(self._extractor, _InceptionFeatures):  # no classes: no mode statistics
            return tuple(k for k in IMAGE_KEYS if k not in ("modes", "kl"))
        return POINT_KEYS if self.dataset.kind == "points" else IMAGE_KEYS

    def _keys(self) -> tuple[str, ...]:
        keys = self._base_keys()
        if self.n_classes:
            keys += ("class_accuracy", "intra_fid")
            keys += tuple(f"fid_class_{c}" for c in range(self.n_classes))
            keys += tuple(f"coverage_class_{c}" for c in range(self.n_classes))
        return keys

    def evaluate(self, fake: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """(num_samples, *dataset.shape) float -> {fid, diversity, precision, recall, density,
        coverage, modes, kl[, high_quality]}; all NaN if `fake` holds NaN or inf (or values
        so large that squared feature norms overflow float32). A conditional evaluator also
        takes the (num_samples,) labels the samples were generated for."""
        expected = (self._n_fake, *self.dataset.shape)
        if tuple(fake.shape) != expected:
            raise ValueError(f"evaluate expects fake samples of shape {expected}, got {tuple(fake.shape)}")
        if bool(self.n_classes) != (labels is not None):
            raise ValueError("a conditional evaluator needs the labels of the samples (fixed_labels), "
                             "an unconditional one takes none")
        if labels is not None and tuple(labels.shape) != (self._n_fake,):
            raise ValueError(f"labels must have shape ({self._n_fake},), got {tuple(labels.shape)}")
        fake = fake.detach().to(self.device, torch.float32)
        nan = {key: math.nan for key in self._keys()}
        if not torch.isfinite(fake).all():
            return nan
        with full_float32(self.device):
            feats, predicted = self._extractor(fake)
            # finite but absurd samples (|x| ~ 1e19+) overflow squared distances: a divergence too
            if not torch.isfinite((feats * feats).sum(dim=1)).all():
                return nan
            try:
                out = self._metrics(fake, feats, predicted)
                if labels is not None:
                    out.update(self._class_metrics(feats, predicted, labels))
                return out
            except np.linalg.LinAlgError:
                return nan

    def _class_metrics(self, feats: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Does a "3" look like a 3 (class_accuracy), and how close is each class to the real one."""
        labels = labels.to(predicted.device)
        out = {"class_accuracy": float((predicted == labels).double().mean())}
        for c, real in self._real_by_class.items():
            mine = feats[labels == c]
            mu, sigma = gaussian_stats(mine)
            out[f"fid_class_{c}"] = frechet_distance_from_stats(real.mu, real.sigma, mu, sigma)
            out[f"coverage_class_{c}"] = prdc(real.feats, mine, K, real_radii=real.radii)["coverage"]
        out["intra_fid"] = float(np.mean([out[f"fid_class_{c}"] for c in self._real_by_class]))
        return out

    def _metrics(self, fake: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        mu, sigma = gaussian_stats(feats)
        out = {"fid": frechet_distance_from_stats(self._real.mu, self._real.sigma, mu, sigma)}
        out.update(prdc(self._real.feats, feats, K, real_radii=self._real.radii))
        ds = self.dataset
        if ds.kind == "points":
            modes = point_mode_stats(fake, ds.centers, ds.std)
        elif labels is not None:
            modes = label_mode_stats(labels, self.n_modes)
        else:
            modes = {}
        out.update({key: float(value) for key, value in modes.items()})
        # diversity in [0, 1]: mode coverage where modes are countable at scale, else k-NN coverage
        coverage_is_diversity = ds.name == "digits" or self._files
        out["diversity"] = out["coverage"] if coverage_is_diversity else out["modes"] / ds.n_modes
        return {key: float(out[key]) for key in self._base_keys()}
