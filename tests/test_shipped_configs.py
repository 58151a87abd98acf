"""Every shipped sweep YAML loads, so a shipped config can never rot."""
from pathlib import Path

import pytest

from ganpipe.config import first_values, load_sweep, resolve_trial

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").rglob("*.yaml"))


def test_there_are_shipped_sweeps():
    names = {p.relative_to(ROOT / "sweeps").as_posix() for p in SWEEPS}
    assert {"quick.yaml", "stability.yaml", "examples/ring8-good.yaml"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_sweep_loads_and_resolves(path):
    sweep = load_sweep(path)
    cfg = resolve_trial(sweep, first_values(sweep.space, sweep.trial))
    assert cfg.train.steps >= 1


def test_stability_runs_on_cpu_with_the_documented_overrides():
    sweep = load_sweep(
        ROOT / "sweeps" / "stability.yaml",
        ["resources.gpu=0", "train.steps=2000", "search.scheduler.grace_period=500", "search.num_samples=4"],
    )
    assert sweep.resources.gpu == 0 and sweep.search.num_samples == 4
