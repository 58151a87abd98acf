"""The metric sanity panel (ganpipe.metrics.panel): fixed synthetic generators whose order the published protocol
(VEEGAN / PacGAN: modes, % high quality, KL) gives; the scores must agree with it where they claim to judge it.
The table itself is docs/metrics.md (benchmarks/metric_panel.py)."""
from __future__ import annotations

import functools

import pytest

from ganpipe.metrics.panel import IMAGES, POINTS, dominance_pairs, misranked, run_panel

# stacked digits at 2,000 generated samples (the protocol's 10,000 take ~4x longer); the order is the point here
SIZES = {"ring8": 0, "grid25": 0, "digits": 0, "stacked-digits": 2000}


@functools.cache
def panel(name: str) -> dict[str, dict[str, float]]:
    rows = run_panel(name, SIZES[name])
    for gen, m in rows.items():
        print(name, f"{gen:18s}", {k: round(v, 5) for k, v in m.items()})
    return rows


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_points_mode_tv_follows_the_protocol_and_fid_does_not(name):
    rows = panel(name)
    assert tuple(rows) == POINTS
    pairs = dominance_pairs(rows)
    assert ("real", "5x blur") in pairs and ("real", "20% off-mode") in pairs and ("20% off-mode", "blob") in pairs
    assert misranked(rows, pairs, "mode_tv") == []
    assert min(rows, key=lambda gen: rows[gen]["mode_tv"]) == "real"
    # The documented failure: FID on raw 2-D coordinates compares means and covariances only, so a moment-matched
    # blob that covers no mode beats a generator with every mode and 80 % high-quality samples (KID, a cubic kernel
    # on the same coordinates, is no better: docs/metrics.md).
    assert ("20% off-mode", "blob") in misranked(rows, pairs, "fid")
    assert rows["blob"]["modes"] == 0 and rows["20% off-mode"]["modes_covered"] == 1


@pytest.mark.parametrize("name", ["digits", "stacked-digits"])
def test_images_fid_and_kid_follow_the_protocol_where_it_sees_image_quality(name):
    rows = panel(name)
    assert tuple(rows) == IMAGES
    pairs = dominance_pairs(rows)
    assert {("real", gen) for gen in IMAGES[1:]} <= set(pairs)
    for score in ("fid", "kid"):
        assert min(rows, key=lambda gen: rows[gen][score]) == "real", score
        # The protocol has no quality figure for images: it counts the classifier's argmax, which still spreads
        # noise-like images over the classes. Where FID or KID disagree with it, the protocol's winner holds the
        # less realistic images (lower k-NN precision) and FID / KID are the ones to trust.
        for a, b in misranked(rows, pairs, score):
            assert rows[a]["precision"] < rows[b]["precision"], (score, a, b)
    # the documented case: blurred + noised images "cover" every class, yet are not digits
    assert ("blurred + noised", "half the classes") in misranked(rows, pairs, "fid")
