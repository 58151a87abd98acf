"""Seed re-check: re-train candidate configs with several seeds as Ray tasks, in parallel.

Used by promotion (`promote.recheck_top_k`) and by a pipeline's `recheck` stage. A
config that scores well once may have been lucky; the median over seeds is what
the ranking trusts.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict

import ray

from ganpipe.config.schema import ResourcesConfig, TrialConfig


def fresh_seed(cfg: TrialConfig, i: int) -> int:
    """The i-th re-check seed of a config: never the trial's own train.seed, whose result was selected for
    being good (re-training it would only repeat that luck, and its compute)."""
    return cfg.train.seed + 1 + i


def _train_seed(cfg_dict: dict, seed: int, threads: int, use_gpu: bool) -> dict:
    import torch

    from ganpipe.config import trial_from_dict
    from ganpipe.train.loop import make_trainer
    from ganpipe.train.threads import set_threads

    set_threads(threads)
    cfg = trial_from_dict(cfg_dict)
    cfg.train.seed = seed
    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    result = make_trainer(cfg, device=device).train()
    if result.status != "finished" or not result.best:
        return {"seed": seed, "status": result.status, "fid": math.inf, "diversity": 0.0, "message": result.message}
    return {"seed": seed, "status": "finished", "fid": result.best["fid"], "diversity": result.best["diversity"]}


def recheck_seeds(configs: dict[str, TrialConfig], seeds: int, resources: ResourcesConfig, log=print,
                  address: str | None = None, num_cpus: int | None = None) -> dict[str, dict]:
    """{key: {"median_fid", "median_diversity", "runs": [...]}} for each config, `seeds` seeds each; on the
    cluster at `address` (or a local Ray of `num_cpus`) unless this process has joined one already."""
    from ganpipe.tune.driver import connect_ray

    started_here = connect_ray(address, num_cpus)
    try:
        task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(_train_seed)
        threads = max(1, int(resources.cpu))
        futures = {
            (key, i): task.remote(asdict(cfg), fresh_seed(cfg, i), threads, resources.gpu > 0)
            for key, cfg in configs.items()
            for i in range(seeds)
        }
        done = dict(zip(futures, ray.get(list(futures.values()))))
    finally:
        if started_here:
            ray.shutdown()
    out = {}
    for key in configs:
        runs = [done[(key, i)] for i in range(seeds)]
        out[key] = {
            "median_fid": statistics.median(r["fid"] for r in runs),
            "median_diversity": statistics.median(r["diversity"] for r in runs),
            "runs": runs,
        }
        log(f"re-check {key}: fid over seeds {[round(r['fid'], 4) for r in runs]} -> median {out[key]['median_fid']:.4g}")
    return out
