"""The feature spaces of the evaluation protocol: what a sample becomes before FID and PRDC.

An extractor maps (N, *shape) float32 -> ((N, d) features, (N,) mode labels | None); `.to(device)` moves
its own copy of its network (inputs must be on that device). Which one a dataset gets is a table:

    points (ring8, grid25)   the raw 2-D coordinates; modes from the centers
    digits                   the shipped digits classifier
    stacked-digits           the digits classifier per channel
    read from files          eval.features: a classifier from `ganpipe features train`, or Inception
"""
from __future__ import annotations

import copy

import torch

from ganpipe.config.schema import INCEPTION_NAMES
from ganpipe.data import Dataset
from ganpipe.data.files import FILE_DATASETS

class _PointFeatures:
    """2-D toy data: the raw coordinates are the features; modes come from the centers."""

    name, sha256 = "raw-2d", None

    def to(self, device: torch.device) -> "_PointFeatures":
        return self

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x, None


class ModelFeatures:
    """Penultimate layer and argmax class of a FeatureClassifier, on a private channels-last copy
    (~2x faster CPU convolutions; the shared, cached model stays as loaded)."""

    chunk = 2048  # images per forward pass: cache-sized activations ran fastest on CPU

    def __init__(self, shared, name: str | None = None) -> None:
        self.name = name or shared.metadata["arch_version"]
        self.sha256 = shared.metadata["sha256"]
        self.model = copy.deepcopy(shared).to(memory_format=torch.channels_last)

    def to(self, device: torch.device) -> "ModelFeatures":
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


class _DigitsFeatures(ModelFeatures):
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


class _ClassifierFeatures(ModelFeatures):
    """Penultimate layer and argmax class of a classifier from `ganpipe features train`."""

    def __init__(self, dataset, path: str | None) -> None:
        from ganpipe.data.files import Probe
        from ganpipe.metrics.image_classifier import default_features_path, features_problem, load_image_classifier

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


# built-in datasets: by name, else by kind; datasets read from files (FILE_DATASETS) take eval.features
BY_NAME = {"digits": _DigitsFeatures, "stacked-digits": _StackedFeatures}
BY_KIND = {"points": _PointFeatures}


def check_features(dataset: Dataset, features: str | None = None, inception_weights: str | None = None) -> None:
    """Load the evaluation's feature network for `dataset` (cached per process); FeaturesMissing if it cannot be."""
    extractor(dataset, features, inception_weights)


def from_files(extractor) -> bool:
    """Whether an extractor is one of a dataset read from files (its classifier, or Inception)."""
    return isinstance(extractor, (_ClassifierFeatures, _InceptionFeatures))


def is_inception(extractor) -> bool:
    return isinstance(extractor, _InceptionFeatures)


def extractor(dataset: Dataset, features: str | None = None, inception_weights: str | None = None):
    """The feature extractor of `dataset`'s protocol (see the module's table)."""
    if dataset.name in FILE_DATASETS:  # a classifier trained on such data, or Inception
        if features and features.lower() in INCEPTION_NAMES:
            return _InceptionFeatures(inception_weights)
        return _ClassifierFeatures(dataset, features)
    if features:
        raise ValueError(f"eval.features is only for datasets read from files; {dataset.name} has its own features")
    make = BY_NAME.get(dataset.name) or BY_KIND.get(dataset.kind)
    if make is None:
        raise ValueError(f"no evaluation protocol for dataset {dataset.name!r}; valid: ring8, grid25, digits, "
                         "stacked-digits, and the datasets read from files")
    return make()
