"""Metrics and the fixed evaluation protocol: numerics against references, real data judged
as a generator, degenerate generators, divergence handling, the shipped digits classifier."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch

from ganpipe.data import get_dataset
from ganpipe.metrics import (
    Evaluator,
    coverage,
    fixed_latents,
    frechet_distance,
    label_mode_stats,
    point_mode_stats,
    prdc,
)
from ganpipe.metrics import digits_classifier as dc
from ganpipe.metrics.features_cli import train_features
from ganpipe.metrics.fid import frechet_distance_from_stats, gaussian_stats
from ganpipe.metrics.prdc import knn_radii

DATASETS = ["ring8", "grid25", "digits", "stacked-digits"]


# ---- Fréchet distance

def _sqrtm_fid(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: the classic scipy.linalg.sqrtm formula, all float64."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _correlated_gaussian(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    """(n, d) full-rank Gaussian with a random covariance and mean."""
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + shift * rng.standard_normal(d)


@pytest.mark.parametrize("d", [8, 64])
def test_frechet_distance_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    x = _correlated_gaussian(rng, 2000, d, 0.0)
    y = _correlated_gaussian(rng, 2000, d, 1.0)
    ours, ref = frechet_distance(x, y), _sqrtm_fid(x, y)
    assert abs(ours - ref) / abs(ref) < 1e-6, (ours, ref)


def test_frechet_distance_identical_sets_is_zero():
    x = _correlated_gaussian(np.random.default_rng(0), 2000, 64, 1.0)
    assert abs(frechet_distance(x, x)) < 1e-6


def test_frechet_distance_numpy_and_torch_agree():
    rng = np.random.default_rng(1)
    x, y = _correlated_gaussian(rng, 500, 16, 0.0), _correlated_gaussian(rng, 500, 16, 0.5)
    assert frechet_distance(torch.from_numpy(x), torch.from_numpy(y)) == frechet_distance(x, y)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    assert frechet_distance(torch.from_numpy(x32), torch.from_numpy(y32)) == frechet_distance(x32, y32)


def test_frechet_distance_from_cached_stats():
    rng = np.random.default_rng(2)
    x, y = _correlated_gaussian(rng, 500, 8, 0.0), _correlated_gaussian(rng, 500, 8, 0.5)
    assert frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y)) == frechet_distance(x, y)


def test_frechet_distance_rank_deficient_is_finite_and_nonnegative():
    # a collapsed generator (rank-1 or constant features) must not produce NaN or complex values
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 32))
    y = np.outer(rng.standard_normal(1000), rng.standard_normal(32))
    const = np.ones((1000, 32))
    for fake in (y, const):
        value = frechet_distance(x, fake)
        assert math.isfinite(value) and value > 0


# ---- precision / recall / density / coverage

@pytest.fixture(scope="module")
def gaussians_64d():
    g = torch.Generator().manual_seed(0)
    return torch.randn(10_000, 64, generator=g), torch.randn(10_000, 64, generator=g)


def test_prdc_same_distribution_is_high(gaussians_64d):
    real, fake = gaussians_64d
    m = prdc(real, fake, k=5)
    print("prdc N(0,I) 64-D 10k vs 10k:", m)
    assert m["coverage"] > 0.95  # expectation 1 - 2^-5 ~ 0.97 for equal sizes (Naeem et al.)
    assert abs(m["density"] - 1) < 0.1  # expectation exactly 1
    # Precision / recall of identical distributions fall with dimension at small k: ~0.68
    # here (the reference code gives the same, see test_prdc_matches_reference); that
    # weakness is why Naeem et al. propose density / coverage. In 8-D they are ~0.95.
    assert m["precision"] > 0.6 and m["recall"] > 0.6
    assert coverage(real, fake, k=5) == m["coverage"]
    low = prdc(real[:, :8], fake[:, :8], k=5)
    assert low["precision"] > 0.9 and low["recall"] > 0.9


def _reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al.'s reference formulas (clovaai/generative-evaluation-prdc), dense float64."""
    def radii(x):
        return np.sort(scipy.spatial.distance.cdist(x, x), axis=1)[:, k]  # column 0 is self

    r_rad, f_rad = radii(real), radii(fake)
    d = scipy.spatial.distance.cdist(real, fake)  # (N, M)
    return {
        "precision": float((d < r_rad[:, None]).any(axis=0).mean()),
        "recall": float((d < f_rad[None, :]).any(axis=1).mean()),
        "density": float((d < r_rad[:, None]).sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < r_rad).mean()),
    }


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_prdc_matches_reference(dim):
    rng = np.random.default_rng(dim)
    real, fake = rng.standard_normal((1500, dim)), rng.standard_normal((1200, dim)) * 1.1 + 0.1
    ours, ref = prdc(real, fake, k=5), _reference_prdc(real, fake, 5)
    for key in ref:  # float32 distances may flip a borderline pair: allow 2 in 1000
        assert ours[key] == pytest.approx(ref[key], abs=2e-3), key


def test_coverage_of_one_repeated_point_is_low(gaussians_64d):
    real, fake = gaussians_64d
    collapsed = fake[:1].repeat(len(fake), 1)
    value = coverage(real, collapsed, k=5)
    print("coverage of one repeated point:", value)
    assert value < 0.05
    assert prdc(real, collapsed, k=5)["recall"] == 0.0


def test_prdc_excludes_self_from_radii():
    # 3 points on a line; with self excluded, the 1-NN radius of 0 is 1, not 0
    real = torch.tensor([[0.0], [1.0], [3.0]])
    from ganpipe.metrics.prdc import knn_radii

    assert knn_radii(real, k=1).tolist() == [1.0, 1.0, 2.0]
    # a fake at 0.5 is strictly inside the balls of 0 and 1, not of 3
    m = prdc(real, torch.tensor([[0.5], [0.6]]), k=1)
    assert m["precision"] == 1.0 and m["coverage"] == pytest.approx(2 / 3) and m["density"] == 2.0


# ---- mode statistics

def test_point_mode_stats_threshold_and_kl():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # 2500 samples: 20 at mode 0 (covered: threshold round(0.008 * 2500) = 20), 19 at mode 1
    # (not covered), the rest far from every center (low quality)
    x = torch.cat([torch.zeros(20, 2), torch.tensor([[10.0, 0.0]]).repeat(19, 1), torch.full((2461, 2), 5.0)])
    m = point_mode_stats(x, centers, std=0.1)
    assert m["modes"] == 1
    assert m["high_quality"] == pytest.approx(39 / 2500)
    q = np.array([20, 19, 0]) / 39
    assert m["kl"] == pytest.approx(float(np.sum(q[:2] * np.log(q[:2] * 3))), abs=1e-9)


def test_point_mode_stats_no_high_quality_samples_is_worst_kl_not_nan():
    m = point_mode_stats(torch.full((100, 2), 50.0), torch.zeros(4, 2), std=0.1)
    assert m["modes"] == 0 and m["high_quality"] == 0.0 and m["kl"] == pytest.approx(math.log(4))


def test_label_mode_stats():
    uniform = label_mode_stats(torch.arange(1000) % 10, 10)
    assert uniform["modes"] == 10 and uniform["kl"] == pytest.approx(0.0, abs=1e-9)
    single = label_mode_stats(torch.full((50,), 3), 10)
    assert single["modes"] == 1 and single["kl"] == pytest.approx(math.log(10))


# ---- the evaluation protocol, real data judged as a generator

@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_points_real_data_as_generator(name):
    ds = get_dataset(name)
    ev = Evaluator(ds)
    fake = ds.sample(ev.num_samples, torch.Generator().manual_seed(12345))  # not the protocol seed
    m = ev.evaluate(fake)
    print(name, m)
    assert m["modes"] == ds.n_modes
    assert m["diversity"] >= 0.95
    assert m["high_quality"] > 0.95
    assert m["kl"] < 0.05
    assert set(m) == {"fid", "kid", "diversity", "precision", "recall", "density", "coverage", "modes", "modes_covered",
                      "kl", "high_quality", "mode_tv"}
    assert m["modes_covered"] == m["diversity"] == m["modes"] / ds.n_modes


def test_digits_disjoint_halves():
    # The protocol's real side is all 1797 digits; judging samples drawn from those same
    # images would make coverage trivially ~1 (every fake sits exactly on a real point).
    # Honest version: a stratified half of the digits is the real set, the other, disjoint
    # half is the "generator". For two independent samples of one distribution, coverage
    # at k=5 is ~1 - 2^-5 = 0.97 in expectation (Naeem et al. 2020, Sec. 4).
    ds = get_dataset("digits")
    real_idx, fake_idx = dc.stratified_split(ds.labels, 0.5, seed=7)
    assert len(set(real_idx.tolist()) & set(fake_idx.tolist())) == 0
    ev = Evaluator(ds, num_samples=len(fake_idx), real=ds.images[real_idx])
    assert ev.protocol["real"] == "custom"
    m = ev.evaluate(ds.images[fake_idx])
    print("digits halves", len(real_idx), len(fake_idx), m)
    assert m["modes"] == 10
    assert m["diversity"] == m["coverage"] >= 0.95


def test_stacked_digits_fresh_samples():
    ds = get_dataset("stacked-digits")
    ev = Evaluator(ds)
    m = ev.evaluate(ds.sample(ev.num_samples, torch.Generator().manual_seed(12345)))
    print("stacked-digits", m)
    assert m["modes"] >= 990
    assert m["diversity"] >= 0.95


@pytest.mark.parametrize("name", DATASETS)
def test_constant_generator_has_low_diversity(name):
    ds = get_dataset(name)
    ev = Evaluator(ds)
    one = ds.sample(1, torch.Generator().manual_seed(3))
    m = ev.evaluate(one.expand(ev.num_samples, *ds.shape).clone())
    print(name, "constant", m)
    assert m["diversity"] <= 0.15
    assert m["modes"] == 1


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e30])  # 1e30: overflows
def test_non_finite_samples_give_nan_metrics(name, bad):
    ds = get_dataset(name)
    ev = Evaluator(ds)
    fake = ds.sample(ev.num_samples, torch.Generator().manual_seed(4))
    fake.view(-1)[17] = bad
    m = ev.evaluate(fake)
    assert m and all(math.isnan(v) for v in m.values())


def test_evaluate_rejects_wrong_shape():
    ev = Evaluator("ring8")
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate(torch.zeros(ev.num_samples - 1, 2))


def test_default_sizes_protocol_and_cache():
    expected = {"ring8": (2500, 2500), "grid25": (2500, 2500), "digits": (1797, 2000),
                "stacked-digits": (10000, 10000)}
    for name, (n_real, n_fake) in expected.items():
        ev = Evaluator(name)
        p = ev.protocol
        assert json.loads(json.dumps(p)) == p
        assert (p["n_real"], p["n_fake"], ev.num_samples) == (n_real, n_fake, n_fake)
        assert p["dataset"] == name and p["k"] == 5 and p["real"] == "protocol"
    shipped_sha = dc.read_digits_checkpoint()["sha256"]
    assert Evaluator("digits").protocol["features"] == {"name": dc.ARCH_VERSION, "sha256": shipped_sha}
    assert Evaluator("ring8", num_samples=1000).protocol["n_fake"] == 1000
    # real statistics are computed once per process and shared
    assert Evaluator("digits")._real is Evaluator(get_dataset("digits"))._real


def test_fixed_latents_are_fixed_and_independent_of_global_rng():
    torch.manual_seed(0)
    a = fixed_latents(64, 16)
    torch.manual_seed(999)
    before = torch.get_rng_state()
    b = fixed_latents(64, 16)
    assert torch.equal(a, b) and a.shape == (64, 16) and a.dtype == torch.float32
    assert torch.equal(before, torch.get_rng_state())  # does not consume the global RNG
    a.zero_()  # callers get their own copy
    assert not torch.equal(a, fixed_latents(64, 16))


# ---- the shipped digits classifier

def test_shipped_digits_classifier_accuracy_and_hash():
    ckpt = dc.read_digits_checkpoint()  # raises on sha256 / architecture mismatch
    assert dc.weights_sha256(ckpt["state_dict"]) == ckpt["sha256"]
    assert dc.WEIGHTS_PATH.stat().st_size < 300_000
    model = dc.load_digits_classifier()
    assert model is dc.load_digits_classifier()  # cached per process
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    images, labels = get_dataset("digits").images, get_dataset("digits").labels
    _, test_idx = dc.heldout_split()
    acc = dc.accuracy(model, images[test_idx], labels[test_idx])
    print("shipped classifier held-out accuracy:", acc, "on", len(test_idx))
    assert acc >= 0.95
    assert acc == pytest.approx(ckpt["heldout_accuracy"])
    assert model.features(images[:5]).shape == (5, dc.FEATURE_DIM)


def test_heldout_split_is_fixed_stratified_80_20():
    train_idx, test_idx = dc.heldout_split()
    assert torch.equal(test_idx, dc.heldout_split()[1])
    assert len(train_idx) + len(test_idx) == 1797 and not set(train_idx.tolist()) & set(test_idx.tolist())
    labels = get_dataset("digits").labels
    per_class = torch.bincount(labels[test_idx], minlength=10).float() / torch.bincount(labels, minlength=10)
    assert torch.allclose(per_class, torch.full((10,), 0.2), atol=0.01)


def test_train_features_unknown_dataset_lists_valid():
    with pytest.raises(ValueError, match="valid: digits"):
        train_features("cifar10")


@pytest.mark.slow
def test_digits_classifier_retrains_reproducibly(tmp_path):
    shipped = dc.read_digits_checkpoint()
    first = train_features("digits", out=str(tmp_path / "a.pt"))
    second = train_features("digits", out=str(tmp_path / "b.pt"))
    print("retrained:", first, "shipped sha:", shipped["sha256"])
    assert first["heldout_accuracy"] == shipped["heldout_accuracy"]
    assert first["sha256"] == second["sha256"]  # bit-identical on one machine
    assert dc.read_digits_checkpoint(first["path"])["seed"] == dc.DEFAULT_SEED


def test_full_float32_turns_tf32_off_on_cuda_only_and_restores_the_settings():
    """What a GPU evaluation does to the process-wide TF32 settings (the flags exist without a GPU)."""
    from ganpipe.metrics.constants import full_float32

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "tf32"  # what a user chasing training speed may set
    try:
        with full_float32(torch.device("cpu")):
            assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with pytest.raises(RuntimeError, match="inside"):
            with full_float32(torch.device("cuda")):
                assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
                raise RuntimeError("inside")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def test_evaluator_on_another_device_moves_copies_and_leaves_the_cached_statistics_on_the_cpu():
    """Without a GPU, PyTorch's "meta" device (shapes, no data) shows where an evaluator puts its network and
    real statistics. The process-wide cache must stay on the CPU: every device compares against the same
    numbers, which is what lets a GPU trial's FIDs match a CPU trial's (benchmarks/gpu_check.py on an H200:
    |Δfid| <= 2.8e-6)."""
    cpu = Evaluator("digits", conditional=True)
    meta = Evaluator("digits", conditional=True, device="meta")
    assert meta._real.feats.device.type == meta._real.radii.device.type == "meta"
    assert all(s.feats.device.type == "meta" for s in meta._real_by_class.values())
    assert {p.device.type for p in meta._extractor.model.parameters()} == {"meta"}
    assert cpu._real.feats.device.type == "cpu" and cpu._real is Evaluator("digits")._real  # the cache itself
    assert all(s.feats.device.type == "cpu" for s in cpu._real_by_class.values())
    assert {p.device.type for p in cpu._extractor.model.parameters()} == {"cpu"}


def test_prdc_computes_where_the_fakes_lie_and_moves_the_reals_there():
    real, fake = torch.randn(300, 8, generator=torch.Generator().manual_seed(0)), torch.randn(200, 8)
    expected = prdc(real, fake, 5)
    assert prdc(real.numpy(), fake, 5) == expected  # numpy reals go to the fakes' device (here the CPU)
    assert prdc(real, fake, 5, real_radii=knn_radii(real, 5).double()) == expected
