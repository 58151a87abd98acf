"""FID and KID through torchmetrics, on features the protocol's extractor has already computed.

    real = RealDistances(real_feats)                    # (n_real, d): once per process (real_stats)
    dist = real.for_fakes(n_fake, device)                # an Evaluator's own copy
    dist(fake_feats)                                     # (n_fake, d) -> {"fid": float, "kid": float}

torchmetrics' FrechetInceptionDistance and KernelInceptionDistance take a `feature=` module; here it is a
pass-through of width d (`_GivenFeatures`): the Evaluator runs its extractor once per evaluation and the
same features feed FID, KID and PRDC (plugging the network itself in would run it twice).
`reset_real_features=False` keeps the real side across `reset()`: the cached prototype holds it and each
evaluation only adds the fakes. Features enter as float64, so both metrics' states and results are float64.

KID is the unbiased MMD^2 with torchmetrics' polynomial kernel (x.y/d + 1)^3, averaged over `subsets`
random subsets of `subset_size` real and fake samples. torchmetrics draws them with torch.randperm on the
global RNG: compute() runs under fork_rng with a fixed seed, so the same features give the same KID at
every evaluation and training's random stream is left as it was.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ganpipe.metrics.constants import KID_SEED, KID_SUBSET_SIZE


class _GivenFeatures(torch.nn.Module):
    """The `feature=` module: (N, d) features in, the same as float64 out."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.to(torch.float64)


def _kid_metric(d: int, subsets: int, subset_size: int) -> KernelInceptionDistance:
    with warnings.catch_warnings():  # "will save all extracted features": that is the point here
        warnings.simplefilter("ignore", UserWarning)
        return KernelInceptionDistance(feature=_GivenFeatures(d), subsets=subsets, subset_size=subset_size,
                                       reset_real_features=False)


class RealDistances:
    """torchmetrics' FID and KID with the real side (n_real, d) filled in; copied per evaluator."""

    def __init__(self, real_feats: torch.Tensor) -> None:
        real = real_feats.detach().to("cpu")
        self.n_real, d = real.shape
        self.fid = FrechetInceptionDistance(feature=_GivenFeatures(d), reset_real_features=False)
        self.kid = _kid_metric(d, 1, min(KID_SUBSET_SIZE, self.n_real))
        self.fid.update(real, real=True)
        self.kid.update(real, real=True)

    def for_fakes(self, n_fake: int, subsets: int, device: torch.device) -> "Distances":
        """A private copy on `device` for n_fake generated samples, KID over `subsets` subsets of
        min(KID_SUBSET_SIZE, n_real, n_fake) samples each."""
        fid, kid = copy.deepcopy(self.fid).to(device), copy.deepcopy(self.kid).to(device)
        kid.subsets, kid.subset_size = subsets, min(KID_SUBSET_SIZE, self.n_real, n_fake)
        return Distances(fid, kid)


class Distances:
    """FID and KID of one evaluation's fake features against the real side they were built with."""

    def __init__(self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance) -> None:
        self.fid, self.kid = fid, kid

    def __call__(self, fake_feats: torch.Tensor) -> dict[str, float]:
        """(n_fake, d) features on the metrics' device -> {"fid", "kid"} (KID: the mean over subsets)."""
        out = {}
        self.fid.reset()
        self.fid.update(fake_feats, real=False)
        out["fid"] = float(self.fid.compute())
        self.kid.reset()
        self.kid.update(fake_feats, real=False)
        with torch.random.fork_rng(devices=[]):  # randperm runs on the CPU generator only
            torch.manual_seed(KID_SEED)
            out["kid"] = float(self.kid.compute()[0])
        return out
