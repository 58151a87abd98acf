"""What the fixed evaluation protocol holds fixed: its version, seeds, k, sample sizes, and the
latent batch and labels every evaluation of every trial feeds the generator.

FIDs compare across trials and sweeps only under equal `Evaluator.protocol` dicts; change a seed
or a size here and PROTOCOL_VERSION together.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ganpipe.config.schema import PRDC_K as K  # noqa: F401 (the k of the k-NN balls of precision / recall / density / coverage)
from ganpipe.metrics.names import BASE

PROTOCOL_VERSION = 1
PROTOCOL_SEED = 8191  # root of every protocol seed; change it and PROTOCOL_VERSION together
LATENT_SEED = PROTOCOL_SEED  # fixed_latents
REAL_SEED = PROTOCOL_SEED + 1  # dataset.eval_real
KID_SEED = PROTOCOL_SEED + 2  # the subsets KID averages over (ganpipe.metrics.distances)

# dataset kind/name -> (n_real, n_fake); digits' real side is the whole dataset (eval_real)
DEFAULT_SIZES = {"points": (2500, 2500), "digits": (1797, 2000), "stacked-digits": (10000, 10000)}
FILES_SIZES = (10000, 10000)  # datasets read from files: up to 10k real images (a fixed subset), 10k generated
# KID: the mean over KID_SUBSETS subsets of min(1000, n_real, n_fake) real and fake samples (whole sets cost 1-5
# evaluations); these counts keep it to a few % of a trial's time (docs/metrics.md). Change with PROTOCOL_VERSION
KID_SUBSET_SIZE = 1000  # torchmetrics' default (Bińkowski et al. 2018)
KID_SUBSETS = {"points": 1, "digits": 2, "stacked-digits": 5, "files": 5, "translation": 5}
# what each kind of evaluation reports (names.BASE order): points have no label histogram, images no 3-std rule
POINT_KEYS = tuple(k for k in BASE if k != "kl_floor")
IMAGE_KEYS = tuple(k for k in BASE if k not in ("high_quality", "mode_tv"))
MODE_KEYS = ("modes", "modes_covered", "kl", "kl_floor")  # images without classes (Inception) have none


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
