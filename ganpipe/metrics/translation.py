"""The fixed evaluation protocol of a translation task (A -> B, CycleGAN).

Every source image of A is translated at each evaluation; the translations are judged in
the feature space of the target domain's classifier (ganpipe.metrics.styled_classifier):

    fid, kid       Fréchet and kernel distances of G_AB(A) to the real B images (torchmetrics, as Evaluator's)
    fid_source     the same for the untranslated A images: the bar a translator must get under
    content_kept   the classifier recovers the source digit's label from its translation
    cycle_error    mean |G_BA(G_AB(a)) - a| (pixels in [-1, 1])
    diversity      coverage (k=5) of real B by the translations, as for other images
    precision, recall, density, coverage, modes, modes_covered, kl, kl_floor   as for other images

    ev = TranslationEvaluator(get_dataset("digits-translation"))
    metrics = ev.evaluate(g_ab(ev.source), g_ba(g_ab(ev.source)))
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ganpipe.metrics.distances import RealDistances
from ganpipe.metrics.modes import label_mode_stats
from ganpipe.metrics.prdc import knn_radii, prdc
from ganpipe.metrics.names import TRANSLATION
from ganpipe.metrics.constants import IMAGE_KEYS, KID_SUBSETS, PROTOCOL_VERSION, K, full_float32
from ganpipe.metrics.features import ModelFeatures

KEYS = (*IMAGE_KEYS, *TRANSLATION)


class _StyledFeatures(ModelFeatures):
    """The shipped styled-digits classifier; data_sha256: what it was trained on."""

    def __init__(self) -> None:
        from ganpipe.metrics.styled_classifier import load_styled_classifier

        shared = load_styled_classifier()
        super().__init__(shared)
        self.data_sha256 = shared.metadata["data_sha256"]


_CACHE: dict[tuple, tuple] = {}


class TranslationEvaluator:
    def __init__(self, dataset, device: str | torch.device = "cpu") -> None:
        """device: where features and distances are computed, as Evaluator's; real statistics on the CPU."""
        if dataset.kind != "translation":
            raise ValueError(f"{dataset.name} is not a translation dataset")
        self.dataset = dataset
        self._features = _StyledFeatures()
        target = dataset.target
        if self._features.data_sha256 != target.content_sha256:
            raise ValueError(f"the shipped styled-digits classifier was trained on other data than {target.name}; "
                             "rebuild it with `ganpipe features train digits-translation`")
        self.source = dataset.source.to_float(dataset.source.images)
        self.source_labels = dataset.source.labels
        key = (dataset.name, self._features.sha256, target.content_sha256, dataset.source.content_sha256)
        if key not in _CACHE:
            real, _ = self._features(target.to_float(target.images))
            real_side = RealDistances(real)
            src, _ = self._features(self.source)
            fid_source = real_side.for_fakes(len(src), 1, torch.device("cpu"))(src)["fid"]
            _CACHE[key] = (real, real_side, knn_radii(real, K), fid_source)
        real, real_side, radii, self.fid_source = _CACHE[key]
        self.device = torch.device(device)
        self._features.to(self.device)
        self._real, self._radii = real.to(self.device), radii.to(self.device)
        self._distances = real_side.for_fakes(len(self.source), KID_SUBSETS["translation"], self.device)

    @property
    def num_samples(self) -> int:
        return len(self.source)

    @property
    def n_modes(self) -> int:
        return self.dataset.n_modes

    @property
    def protocol(self) -> dict:
        ds = self.dataset
        return {
            "version": PROTOCOL_VERSION,
            "dataset": ds.name,
            "task": "translation",
            "direction": f"{ds.source.name} -> {ds.target.name}",
            "n_source": len(self.source),
            "n_real": len(self._real),
            "n_fake": len(self.source),
            "features": {"name": self._features.name, "sha256": self._features.sha256},
            "k": K,
            "data": {"source_sha256": ds.source.content_sha256, "target_sha256": ds.target.content_sha256},
            "real": "protocol",
        }

    def evaluate(self, translated: torch.Tensor, cycled: torch.Tensor) -> dict[str, float]:
        """translated = G_AB(source), cycled = G_BA(translated), both (n_source, C, H, W)."""
        expected = tuple(self.source.shape)
        for name, x in (("translated", translated), ("cycled", cycled)):
            if tuple(x.shape) != expected:
                raise ValueError(f"evaluate expects {name} images of shape {expected}, got {tuple(x.shape)}")
        translated = translated.detach().to(self.device, torch.float32)
        cycled = cycled.detach().to("cpu", torch.float32)
        nan = {key: math.nan for key in KEYS}
        if not (torch.isfinite(translated).all() and torch.isfinite(cycled).all()):
            return nan
        with full_float32(self.device):
            feats, predicted = self._features(translated)
            if not torch.isfinite((feats * feats).sum(dim=1)).all():
                return nan
            try:
                out = self._distances(feats)  # fid, kid
            except (np.linalg.LinAlgError, torch.linalg.LinAlgError):
                return nan
            out.update(prdc(self._real, feats, K, real_radii=self._radii))
        out.update({k: float(v) for k, v in label_mode_stats(predicted, self.n_modes).items()})
        out["modes_covered"] = out["modes"] / self.n_modes
        out["diversity"] = out["coverage"]
        out["content_kept"] = float((predicted.cpu() == self.source_labels).double().mean())
        out["cycle_error"] = float((cycled - self.source).abs().mean())
        out["fid_source"] = self.fid_source
        return {key: float(out[key]) for key in KEYS}
