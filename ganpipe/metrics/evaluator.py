"""The fixed evaluation protocol: same real set, same latent batch, same feature space at
every eval of every trial, so FIDs compare across trials and sweeps (only under equal
`Evaluator.protocol` dicts).

    ev = Evaluator(get_dataset("ring8"))
    z = fixed_latents(ev.num_samples, latent_dim)      # same z at every eval
    metrics = ev.evaluate(generator(z))                # {"fid": ..., "kid": ..., "diversity": ..., ...}

Class-conditional generators are judged on balanced fixed labels (Evaluator(..., conditional=True)):
    y = fixed_labels(ev.num_samples, n_classes)
    metrics = ev.evaluate(generator(z, y), labels=y)   # + class_accuracy, intra_fid, fid_class_K, ...

What the protocol holds fixed is in ganpipe.metrics.constants, the feature spaces in
ganpipe.metrics.features, the cached real statistics in ganpipe.metrics.real_stats, FID and KID
(torchmetrics) in ganpipe.metrics.distances; what each metric means per dataset in docs/metrics.md.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ganpipe.data import Dataset, get_dataset
from ganpipe.metrics.constants import (
    DEFAULT_SIZES,
    FILES_SIZES,
    IMAGE_KEYS,
    KID_SUBSETS,
    LATENT_SEED,
    MODE_KEYS,
    POINT_KEYS,
    PROTOCOL_VERSION,
    REAL_SEED,
    K,
    full_float32,
)
from ganpipe.metrics.features import extractor as make_extractor
from ganpipe.metrics.features import from_files, is_inception
from ganpipe.metrics.fid import frechet_distance_from_stats, gaussian_stats
from ganpipe.metrics.modes import label_mode_stats, point_mode_stats
from ganpipe.metrics.prdc import prdc
from ganpipe.metrics.real_stats import cached_per_class, cached_real_stats, real_stats


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
        self._extractor = make_extractor(self.dataset, features, inception_weights)
        self._files = from_files(self._extractor)
        if self._files:
            n_real, n_fake = min(FILES_SIZES[0], len(self.dataset)), FILES_SIZES[1]
            kid_subsets = KID_SUBSETS["files"]
        else:
            size_key = "points" if self.dataset.kind == "points" else self.dataset.name
            n_real, n_fake = DEFAULT_SIZES[size_key]
            kid_subsets = KID_SUBSETS[size_key]
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0 (0 = default {n_fake}), got {num_samples}")
        self._n_fake = num_samples or n_fake
        if real is not None:
            self._custom_real = True
            self._real = real_stats(real, self._extractor)
        else:
            self._custom_real = False
            real_set = self.dataset.eval_real(n_real, REAL_SEED)
            key = (self.dataset.name, len(real_set), REAL_SEED, self._extractor.name, self._extractor.sha256,
                   getattr(self.dataset, "content_sha256", None))
            self._real = cached_real_stats(key, real_set, self._extractor)
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
        self._distances = self._real.distances.for_fakes(self._n_fake, kid_subsets, self.device)
        if conditional:
            self._real_by_class = {c: stats.to(self.device) for c, stats in self._real_by_class.items()}

    def _init_conditional(self, n_real: int, cache_key: tuple | None) -> None:
        ds, n_classes = self.dataset, self.n_classes
        if n_classes < 2:
            raise ValueError(f"conditional evaluation needs labelled data; {ds.name} has no class labels")
        if self._custom_real:
            raise ValueError("conditional evaluation uses the protocol's real set (and its labels); drop `real`")
        if is_inception(self._extractor):
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
        self._real_by_class = cached_per_class(cache_key, self._real, real_labels, n_classes)

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
        if is_inception(self._extractor):  # no classes: no mode statistics
            return tuple(k for k in IMAGE_KEYS if k not in MODE_KEYS)
        return POINT_KEYS if self.dataset.kind == "points" else IMAGE_KEYS

    def _keys(self) -> tuple[str, ...]:
        keys = self._base_keys()
        if self.n_classes:
            keys += ("class_accuracy", "intra_fid")
            keys += tuple(f"fid_class_{c}" for c in range(self.n_classes))
            keys += tuple(f"coverage_class_{c}" for c in range(self.n_classes))
        return keys

    def evaluate(self, fake: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """(num_samples, *dataset.shape) float -> {fid, kid, diversity, precision, recall, density, coverage,
        modes, modes_covered, kl, then kl_floor (images) or high_quality, mode_tv (points)}; images without
        classes (Inception) have no modes, modes_covered, kl, kl_floor. All NaN if `fake` holds NaN or inf
        (or values so large that squared feature norms overflow float32). A conditional evaluator also
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
            except (np.linalg.LinAlgError, torch.linalg.LinAlgError):
                return nan

    def _class_metrics(self, feats: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Does a "3" look like a 3 (class_accuracy), and how close is each class to the real one (the plain
        float64 frechet_distance: ~200 samples a class, ten small FIDs, no torchmetrics state to keep)."""
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
        out = self._distances(feats)  # fid, kid
        out.update(prdc(self._real.feats, feats, K, real_radii=self._real.radii))
        ds = self.dataset
        if ds.kind == "points":
            modes = point_mode_stats(fake, ds.centers, ds.std)
        elif labels is not None:
            modes = label_mode_stats(labels, self.n_modes)
        else:
            modes = {}
        out.update({key: float(value) for key, value in modes.items()})
        if modes:
            out["modes_covered"] = out["modes"] / self.n_modes
        # diversity in [0, 1]: mode coverage where modes are countable at scale, else k-NN coverage
        coverage_is_diversity = ds.name == "digits" or self._files
        out["diversity"] = out["coverage"] if coverage_is_diversity else out["modes_covered"]
        return {key: float(out[key]) for key in self._base_keys()}
