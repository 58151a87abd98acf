"""The scores issue 18 adds to the protocol: mode_tv (points) and its floor, kl_floor, modes_covered, and FID and
KID through torchmetrics, each against an independent float64 reference on the protocol's own features."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from ganpipe.data import get_dataset
from ganpipe.metrics import Evaluator, frechet_distance, label_mode_stats, point_mode_stats
from ganpipe.metrics.constants import KID_SEED
from ganpipe.metrics.distances import RealDistances
from ganpipe.metrics.modes import HQ_STDS, kl_floor, kl_to_uniform, mode_tv
from ganpipe.metrics.panel import image_generators, point_generators

# ---- mode_tv


def _tv_reference(counts, n: int) -> float:
    """TV = 1 - sum_i min(p_i, u_i) over the M mode bins and the off-mode bin (u = (1/M, ..., 1/M, 0))."""
    p = np.append(np.asarray(counts, float) / n, 1 - np.sum(counts) / n)
    u = np.append(np.full(len(counts), 1 / len(counts)), 0.0)
    return float(1 - np.minimum(p, u).sum())


@pytest.mark.parametrize("counts, n", [([25, 25, 25, 25], 100), ([100, 0, 0, 0], 100), ([0, 0, 0, 0], 100),
                                       ([40, 30, 20, 0], 100), ([20, 20, 20, 20], 100), ([5, 60, 1, 30], 97)])
def test_mode_tv_is_the_total_variation_to_the_ideal_histogram(counts, n):
    assert mode_tv(np.array(counts), n) == pytest.approx(_tv_reference(counts, n), abs=1e-12)


def test_mode_tv_bounds():
    m = 8
    assert mode_tv(np.full(m, 10), 10 * m) == 0.0  # every mode equally often, none off-mode
    assert mode_tv(np.eye(m)[0] * 80, 80) == pytest.approx(1 - 1 / m)  # one mode
    assert mode_tv(np.zeros(m), 80) == 1.0  # nothing near a mode
    # each failure alone moves it off 0: a dropped mode, imbalance, off-mode samples
    assert mode_tv(np.array([0, 20, 20, 20, 20, 0, 0, 0]), 80) > 0
    assert mode_tv(np.array([11, 9, 10, 10, 10, 10, 10, 10]), 80) > 0
    assert mode_tv(np.full(m, 9), 80) > 0


def test_point_mode_stats_mode_tv_counts_off_mode_samples_as_their_own_bin():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([torch.zeros(30, 2), torch.tensor([[10.0, 0.0]]).repeat(10, 1), torch.full((60, 2), 5.0)])
    assert point_mode_stats(x, centers, std=0.1)["mode_tv"] == pytest.approx(_tv_reference([30, 10, 0], 100))


def _expected_tv_of_a_perfect_sampler(n: int, m: int) -> float:
    """E[mode_tv] for n draws of the mixture itself: each mode's high-quality count is Binomial(n, q/m) with
    q = P(|x| <= 3 std) = 1 - exp(-9/2) for a 2-D isotropic Gaussian; off-mode share 1 - q on average."""
    q = 1 - math.exp(-HQ_STDS**2 / 2)
    c = np.arange(n + 1)
    e_abs = np.sum(scipy.stats.binom.pmf(c, n, q / m) * np.abs(c / n - 1 / m))
    return 0.5 * (m * e_abs + (1 - q))


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mode_tv_floor_of_a_perfect_generator_matches_its_exact_expectation(name):
    """The floor docs/metrics.md states: 2,500 samples of the real mixture, 200 draws."""
    ds = get_dataset(name)
    g = torch.Generator().manual_seed(0)
    tvs = np.array([point_mode_stats(ds.sample(2500, g), ds.centers, ds.std)["mode_tv"] for _ in range(200)])
    expected = _expected_tv_of_a_perfect_sampler(2500, ds.n_modes)
    print(name, "mode_tv floor: simulated", tvs.mean(), "+-", tvs.std(), "exact", expected)
    assert abs(tvs.mean() - expected) < 4 * tvs.std() / math.sqrt(len(tvs))
    # the floor is what a perfect generator shows, far below any failing panel generator's
    assert tvs.max() < min(point_mode_stats(x, ds.centers, ds.std)["mode_tv"]
                           for key, x in point_generators(ds, 2500).items() if key != "real")


# ---- kl_floor


@pytest.mark.parametrize("n, m", [(10_000, 1000), (2000, 10)])
def test_kl_floor_is_the_mean_kl_of_a_uniform_sampler(n, m):
    rng = np.random.default_rng(n)
    kls = np.array([kl_to_uniform(np.bincount(rng.integers(0, m, n), minlength=m)) for _ in range(400)])
    print(n, m, "kl_floor", kl_floor(n, m), "simulated", kls.mean(), "first order", (m - 1) / (2 * n))
    assert abs(kls.mean() - kl_floor(n, m)) < 4 * kls.std() / math.sqrt(len(kls))
    assert kl_floor(n, m) == pytest.approx((m - 1) / (2 * n), rel=0.05)  # the rule of thumb is its first order
    assert label_mode_stats(torch.arange(n) % m, m)["kl_floor"] == kl_floor(n, m)


# ---- keys of the protocol


def test_modes_covered_and_diversity_per_dataset():
    for name, diversity in (("ring8", "modes_covered"), ("digits", "coverage"), ("stacked-digits", "modes_covered")):
        ds = get_dataset(name)
        ev = Evaluator(ds, 1000)
        m = ev.evaluate(ds.sample(1000, torch.Generator().manual_seed(1)))
        assert m["modes_covered"] == m["modes"] / ds.n_modes and m["diversity"] == m[diversity], name
        assert ("mode_tv" in m) == ("high_quality" in m) == (ds.kind == "points")
        assert ("kl_floor" in m) == (ds.kind != "points") and "kid" in m


# ---- FID and KID through torchmetrics


def _fid_on_live_dims(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: dimensions constant in both sets (dead ReLU units) add exactly their squared
    mean gap; the rest, a well-conditioned covariance, by the classic scipy.linalg.sqrtm formula."""
    dead = (x.std(0) == 0) & (y.std(0) == 0)
    gap = float(((x[:, dead].mean(0) - y[:, dead].mean(0)) ** 2).sum())
    x, y = x[:, ~dead], y[:, ~dead]
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return gap + float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _panel_features(name: str, n: int):
    ds = get_dataset(name)
    ev = Evaluator(ds, n)
    make = point_generators if ds.kind == "points" else image_generators
    return ev, {key: ev._extractor(x.float())[0] for key, x in make(ds, n).items()}


@pytest.mark.parametrize("name, n", [("ring8", 2500), ("digits", 2000), ("stacked-digits", 2000)])
def test_evaluator_fid_through_torchmetrics_equals_the_float64_reference(name, n):
    ev, feats = _panel_features(name, n)
    real = ev._real.feats
    for key, fake in feats.items():
        ours, plain = ev._distances(fake)["fid"], frechet_distance(real, fake)
        assert ours == pytest.approx(plain, rel=1e-6), key
    # the real set against a draw with the same dead units: the singular covariance the trace form must handle
    ref = _fid_on_live_dims(real.double().numpy(), feats["real"].double().numpy())
    assert frechet_distance(real, feats["real"]) == pytest.approx(ref, rel=1e-6)
    assert ev._distances(feats["real"])["fid"] == pytest.approx(ref, rel=1e-6)


def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Bińkowski et al. 2018), float64 numpy."""
    m, d = len(x), x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


@pytest.mark.parametrize("name", ["ring8", "digits"])
def test_kid_on_whole_sets_equals_the_float64_reference(name):
    """One subset as large as both sets: the subset is the whole set, in a shuffled order."""
    ev, feats = _panel_features(name, 2000)
    real = ev._real.feats[:800]
    dist = RealDistances(real).for_fakes(800, 1, torch.device("cpu"))
    for key, fake in feats.items():
        ref = _kid_reference(real.double().numpy(), fake[:800].double().numpy())
        assert dist(fake[:800])["kid"] == pytest.approx(ref, rel=1e-6), key


def test_kid_over_subsets_is_the_mean_over_the_seeded_subsets_and_leaves_the_global_rng_alone():
    ev, feats = _panel_features("digits", 2000)
    real, fake = ev._real.feats, feats["blob"]
    g = torch.Generator().manual_seed(KID_SEED)  # torchmetrics draws randperm(real), randperm(fake) per subset
    subsets = [(torch.randperm(len(real), generator=g)[:1000], torch.randperm(len(fake), generator=g)[:1000])
               for _ in range(3)]
    ref = np.mean([_kid_reference(real[i].double().numpy(), fake[j].double().numpy()) for i, j in subsets])
    dist = ev._real.distances.for_fakes(2000, 3, torch.device("cpu"))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = dist(fake)["kid"]
    assert torch.equal(state, torch.get_rng_state())  # training's random stream is untouched
    assert first == pytest.approx(ref, rel=1e-6)
    assert dist(fake)["kid"] == first == ev._real.distances.for_fakes(2000, 3, torch.device("cpu"))(fake)["kid"]


def test_evaluations_of_the_same_samples_give_the_same_numbers():
    ds = get_dataset("digits")
    fake = ds.sample(2000, torch.Generator().manual_seed(9))
    a, b = Evaluator(ds).evaluate(fake), Evaluator(ds).evaluate(fake)
    assert a == b and math.isfinite(a["kid"])
