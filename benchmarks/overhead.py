"""Pipeline overhead and evaluation cost, measured side by side in one run.

For the same model and config, training steps per second of
  (a) a minimal hand-written PyTorch loop (same G, D, loss, optimizer, batch),
  (b) `ganpipe trial`'s Trainer in this process (evaluation time excluded),
  (c) one trial inside `ganpipe sweep` (Ray + MLflow + a checkpoint per evaluation;
      evaluation time excluded, everything else included),
and the share of a trial's wall time spent in evaluation.

    python benchmarks/overhead.py --repeats 3 --out docs/benchmarks-overhead.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "ring8-mlp": {
        "name": "bench-ring8", "data": "ring8",
        "model": {"architecture": "mlp", "latent_dim": 16, "width": 128, "ema_decay": 0.999},
        "loss": "hinge", "optimizer": {"name": "adam", "lr_g": 1e-3, "lr_d": 1e-3},
        "train": {"steps": 4000, "batch_size": 256}, "eval": {"every": 1000},
    },
    "digits-dcgan": {
        "name": "bench-digits", "data": "digits",
        "model": {"architecture": "dcgan", "latent_dim": 32, "width": 32, "ema_decay": 0.999},
        "loss": "hinge", "optimizer": {"name": "adam", "lr_g": 2e-4, "lr_d": 2e-4},
        "train": {"steps": 1500, "batch_size": 64}, "eval": {"every": 500},
    },
}


def hand_loop(cfg) -> float:
    """(a): the textbook loop, nothing else: steps/s."""
    from ganpipe.data import get_dataset
    from ganpipe.nets import build_networks
    from ganpipe.train.ema import make_ema

    torch.manual_seed(0)
    data = get_dataset(cfg.data.dataset)
    g, d = build_networks(cfg.model, data.shape)
    ema = make_ema(g, cfg.model.ema_decay)  # the Trainer's EMA, warm-up included: one foreach lerp a step
    og = torch.optim.Adam(g.parameters(), cfg.optimizer.lr_g, betas=(cfg.optimizer.beta1, cfg.optimizer.beta2))
    od = torch.optim.Adam(d.parameters(), cfg.optimizer.lr_d, betas=(cfg.optimizer.beta1, cfg.optimizer.beta2))
    rng = torch.Generator().manual_seed(1)
    bs, zdim = cfg.train.batch_size, cfg.model.latent_dim
    start = time.perf_counter()
    for _ in range(cfg.train.steps):
        real = data.sample(bs, rng)
        with torch.no_grad():
            fake = g(torch.randn(bs, zdim, generator=rng))
        loss_d = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake)).mean()
        od.zero_grad(set_to_none=True)
        loss_d.backward()
        od.step()
        loss_g = -d(g(torch.randn(bs, zdim, generator=rng))).mean()
        og.zero_grad(set_to_none=True)
        loss_g.backward()
        og.step()
        ema.update_parameters(g)
    return cfg.train.steps / (time.perf_counter() - start)


def trial_in_process(cfg) -> tuple[float, float]:
    """(b): ganpipe's Trainer; returns (steps/s without evaluation, share of wall time in evaluation)."""
    from ganpipe.train.loop import Trainer
    from ganpipe.train.reporter import ListReporter

    reporter = ListReporter()
    start = time.perf_counter()
    Trainer(cfg).train(reporter)
    wall = time.perf_counter() - start
    evals = sum(r.metrics["eval_seconds"] for r in reporter.reports)
    return cfg.train.steps / (wall - evals), evals / wall


def trial_in_sweep(raw: dict, folder: Path) -> tuple[float, float, float]:
    """(c): one trial of a real `ganpipe sweep`: (steady steps/s, steps/s with the trial's start-up, eval share).

    steady: evaluation intervals after the first, each with its checkpoint, MLflow logging and
    report, evaluation excluded; with start-up: Tune's time_total_s (the worker's imports, data,
    networks, real statistics, MLflow run creation) minus evaluation time."""
    from ray.tune import ExperimentAnalysis

    path = folder / "sweep.yaml"
    raw = {**raw, "search": {"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}}}
    path.write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--num-cpus", "1"], cwd=folder,
                   check=True, capture_output=True)
    (exp,) = [p for p in (folder / "ray_results").iterdir() if p.is_dir()]
    df = next(iter(ExperimentAnalysis(str(exp)).trial_dataframes.values()))
    total = float(df["time_total_s"].iloc[-1])
    evals = float(df["eval_seconds"].sum())
    steps = int(df["step"].iloc[-1])
    later = df.iloc[1:]
    steady = float(later["step"].diff().fillna(later["step"].iloc[0] - df["step"].iloc[0]).sum()
                   / (later["time_this_iter_s"] - later["eval_seconds"]).sum())
    return steady, steps / (total - evals), evals / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply step counts (CI runs tiny)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from ganpipe.config import first_values, load_sweep, resolve_trial

    results = {}
    for name, raw in CASES.items():
        raw = json.loads(json.dumps(raw))
        if args.scale < 1:  # CI's tiny runs evaluate more often, so they still have two evaluation intervals
            raw["eval"]["every"] = max(10, int(raw["eval"]["every"] * min(1.0, args.scale * 10)))
        raw["train"]["steps"] = max(2 * raw["eval"]["every"], int(raw["train"]["steps"] * args.scale))
        rows = {"hand": [], "trial": [], "sweep": [], "sweep_with_startup": [], "eval_share_trial": [],
                "eval_share_sweep": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine speed hits all three alike
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "s.yaml"
                path.write_text(yaml.safe_dump(raw))
                sweep = load_sweep(path)
                cfg = resolve_trial(sweep, first_values(sweep.space, sweep.trial))
                rows["hand"].append(hand_loop(cfg))
                sps, share = trial_in_process(cfg)
                rows["trial"].append(sps)
                rows["eval_share_trial"].append(share)
                steady, with_startup, share = trial_in_sweep(raw, Path(tmp))
                rows["sweep"].append(steady)
                rows["sweep_with_startup"].append(with_startup)
                rows["eval_share_sweep"].append(share)
        med = {k: statistics.median(v) for k, v in rows.items()}
        results[name] = {
            "raw": rows, "median": med,
            "trial_over_hand": med["trial"] / med["hand"], "sweep_over_hand": med["sweep"] / med["hand"],
            "sweep_with_startup_over_hand": med["sweep_with_startup"] / med["hand"],
        }
        print(f"{name}: hand {med['hand']:.1f} steps/s, trial {med['trial']:.1f} ({results[name]['trial_over_hand']:.3f}x), "
              f"sweep {med['sweep']:.1f} ({results[name]['sweep_over_hand']:.3f}x; with start-up "
              f"{results[name]['sweep_with_startup_over_hand']:.3f}x), eval share trial "
              f"{med['eval_share_trial']:.3f} sweep {med['eval_share_sweep']:.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
