"""Score a registered 2-D generator the way the papers do, independently of ganpipe's own metrics.

    python benchmarks/score_champion.py models:/quick@champion --dataset ring8 [--tracking-uri URI] [--json]

It runs in a fresh interpreter that never imports ganpipe: the model comes from MLflow
(`mlflow.pytorch.load_model`, then `.eval()` as a PyTorch user would), the mixture is written out here
from its published definition (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018), and the count is
plain numpy: 2,500 samples; a sample is high-quality within 3 std of its nearest centre; a mode is
covered with at least round(0.008 N) = 20 high-quality samples (PacGAN's threshold); KL is that of the
high-quality samples' mode histogram to uniform.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

SAMPLES = 2500
MIXTURES = {  # name -> (centres (K, 2), std)
    "ring8": ([(2 * math.cos(2 * math.pi * i / 8), 2 * math.sin(2 * math.pi * i / 8)) for i in range(8)], 0.02),
    "grid25": ([(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], 0.05),
}


def score(samples: np.ndarray, dataset: str) -> dict:
    """(N, 2) samples -> {"modes", "high_quality", "kl", "n"} under the published protocol."""
    centres, std = MIXTURES[dataset]
    centres = np.asarray(centres, dtype=np.float64)
    dist = np.linalg.norm(samples[:, None, :].astype(np.float64) - centres[None], axis=2)
    nearest, hq = dist.argmin(axis=1), dist.min(axis=1) <= 3 * std
    counts = np.bincount(nearest[hq], minlength=len(centres))
    q = counts / max(counts.sum(), 1)
    kl = float(np.sum(q[q > 0] * np.log(q[q > 0] * len(centres)))) if counts.sum() else math.log(len(centres))
    return {"modes": int((counts >= max(1, round(0.008 * len(samples)))).sum()), "of": len(centres),
            "high_quality": float(hq.mean()), "kl": kl, "n": len(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_uri")
    ap.add_argument("--dataset", choices=sorted(MIXTURES), required=True)
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if "ganpipe" in sys.modules:  # pragma: no cover - the point of the script
        raise SystemExit("run this in a fresh interpreter, without ganpipe imported")
    import mlflow
    import torch

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    g = mlflow.pytorch.load_model(args.model_uri)
    g.eval()
    latent_dim = int(mlflow.models.get_model_info(args.model_uri).metadata["latent_dim"])
    z = torch.randn(SAMPLES, latent_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        x = g(z).numpy()
    out = score(x, args.dataset)
    print(json.dumps(out) if args.json else
          f"{args.model_uri}: {out['modes']}/{out['of']} modes, {100 * out['high_quality']:.1f} % high-quality, "
          f"KL {out['kl']:.3f} ({out['n']} samples, 3 std)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
