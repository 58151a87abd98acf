"""Score a registered generator the way the papers do, independently of ganpipe's own metrics.

    python benchmarks/score_champion.py models:/quick@champion --dataset ring8 [--tracking-uri URI] [--json]
    python benchmarks/score_champion.py models:/stacked@champion --dataset stacked-digits [--json]
    python benchmarks/score_champion.py samples.npy --dataset stacked-digits   # from `ganpipe sample CKPT -o samples.npy`

It runs in a fresh interpreter that never imports ganpipe: the model comes from MLflow
(`mlflow.pytorch.load_model`, then `.eval()` as a PyTorch user would) and the data's definition is written
out here.
- ring8, grid25 (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): plain numpy over 2,500 samples;
  a sample is high-quality within 3 std of its nearest centre; a mode is covered with at least
  round(0.008 N) = 20 high-quality samples (PacGAN's threshold); KL is that of the high-quality samples' mode
  histogram to uniform.
- stacked-digits (PacGAN's Stacked-MNIST protocol on scikit-learn's 8x8 digits): 26,000 samples; each of the
  3 channels is labelled by a classifier trained here (an RBF SVM on the 1,797 digits, not ganpipe's
  feature network), a sample's mode is its triple of labels (1,000 modes); a mode is covered with at least one
  sample; KL is that of the mode histogram to uniform. Its floor is measured the same way: 26,000 real
  stacked samples (three digits drawn at random) through the same classifier.
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


STACKED_SAMPLES = 26000  # PacGAN's Stacked-MNIST sample count
STACKED_MODES = 1000


def digit_classifier():
    """An RBF SVM on scikit-learn's 1,797 digits in the data's pixel scale ([0, 16] -> [-1, 1]); with its
    accuracy on a held-out fifth (then refitted on all of them, the data the generators learned)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    bunch = load_digits()
    x, y = bunch.images.reshape(len(bunch.images), -1) / 8.0 - 1.0, bunch.target
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    held_out = float((SVC(C=10.0, gamma="scale").fit(xa, ya).predict(xb) == yb).mean())
    return SVC(C=10.0, gamma="scale").fit(x, y), held_out, bunch.images / 8.0 - 1.0


def score_stacked(images: np.ndarray, clf) -> dict:
    """(N, 3, 8, 8) images in [-1, 1] -> {"modes", "kl", "n"}: each channel's digit, the triple is the mode."""
    if images.ndim != 4 or images.shape[1:] != (3, 8, 8):
        raise SystemExit(f"stacked-digits samples are (N, 3, 8, 8) images; got shape {images.shape}")
    n = len(images)
    digits = clf.predict(np.clip(images, -1, 1).reshape(n * 3, 64)).reshape(n, 3)
    counts = np.bincount(digits @ np.array([100, 10, 1]), minlength=STACKED_MODES)
    q = counts / n
    return {"modes": int((counts > 0).sum()), "of": STACKED_MODES,
            "kl": float(np.sum(q[q > 0] * np.log(q[q > 0] * STACKED_MODES))), "n": n}


def sample(model_uri: str, n: int, seed: int, tracking_uri: str | None) -> np.ndarray:
    """n samples of a logged generator, loaded as any PyTorch user of MLflow would, from z ~ N(0, I) seeded."""
    import mlflow
    import torch

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    g = mlflow.pytorch.load_model(model_uri)
    g.eval()
    latent_dim = int(mlflow.models.get_model_info(model_uri).metadata["latent_dim"])
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([g(part) for part in z.split(1000)]).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_uri", help="models:/NAME@ALIAS, runs:/ID/generator, or a .npy of samples")
    ap.add_argument("--dataset", choices=[*sorted(MIXTURES), "stacked-digits"], required=True)
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if "ganpipe" in sys.modules:  # pragma: no cover - the point of the script
        raise SystemExit("run this in a fresh interpreter, without ganpipe imported")
    stacked = args.dataset == "stacked-digits"
    if args.model_uri.endswith(".npy"):  # samples drawn elsewhere (e.g. from a checkpoint), scored as they are
        x = np.load(args.model_uri)
    else:
        x = sample(args.model_uri, STACKED_SAMPLES if stacked else SAMPLES, args.seed, args.tracking_uri)
    if not stacked:
        out = score(x, args.dataset)
        print(json.dumps(out) if args.json else
              f"{args.model_uri}: {out['modes']}/{out['of']} modes, {100 * out['high_quality']:.1f} % high-quality, "
              f"KL {out['kl']:.3f} ({out['n']} samples, 3 std)")
        return 0
    clf, held_out, real = digit_classifier()
    out = score_stacked(x, clf)
    pick = np.random.default_rng(args.seed).integers(len(real), size=(STACKED_SAMPLES, 3))
    floor = score_stacked(real[pick], clf)  # real stacked samples: sampling noise and the classifier's own errors
    out.update(kl_floor=floor["kl"], modes_real=floor["modes"], classifier_held_out_accuracy=held_out)
    print(json.dumps(out) if args.json else
          f"{args.model_uri}: {out['modes']}/{out['of']} modes, KL {out['kl']:.4f} (real data: {floor['modes']} "
          f"modes, KL {floor['kl']:.4f}; {out['n']} samples; classifier held-out accuracy {held_out:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
