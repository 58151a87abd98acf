"""Seed re-check: re-train the best candidates with fresh seeds as Ray tasks, in parallel, and rank them by
the median of the sweep's objective. The one path for `promote.recheck_top_k` (after a sweep, `ganpipe promote`) and a pipeline's
`recheck` stage: both take the candidates in promotion's own order (ganpipe.promote.shortlist).

A config that scores well once may have been lucky; the median over seeds is what the ranking trusts.
"""
from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

import ray

from ganpipe import cluster, tracking
from ganpipe.config.schema import PromoteConfig, ResourcesConfig, TrialConfig
from ganpipe.objective import OBJECTIVE
from ganpipe.promote import Candidate, Decision, promote, shortlist
from ganpipe.train.checkpoint import load_checkpoint


def fresh_seed(cfg: TrialConfig, i: int) -> int:
    """The i-th re-check seed of a config: never the trial's own train.seed, whose result was selected for
    being good (re-training it would only repeat that luck, and its compute)."""
    return cfg.train.seed + 1 + i


def _train_seed(cfg_dict: dict, seed: int, threads: int, use_gpu: bool, objectives: list[str]) -> dict:
    import torch

    from ganpipe.config import trial_from_dict
    from ganpipe.train import make_trainer
    from ganpipe.train.threads import set_threads

    set_threads(threads)
    cfg = trial_from_dict(cfg_dict)
    cfg.train.seed = seed
    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    result = make_trainer(cfg, device=device, objectives=objectives).train()
    if result.status != "finished" or not result.best:  # a seed that diverges counts as the worst score
        return {"seed": seed, "status": result.status, "metrics": {OBJECTIVE: math.inf}, "message": result.message}
    return {"seed": seed, "status": "finished", "metrics": result.best}


def summarize(runs: list[dict]) -> dict:
    """{"median": {metric: median over the seeds}, "min"/"max": the objective's range, "seeds", "runs"}.
    A metric's median is over the seeds that finished; the objective's over all (a failed seed is inf)."""
    scores = [r["metrics"][OBJECTIVE] for r in runs]
    finished = [r["metrics"] for r in runs if r["status"] == "finished"]
    keys = [k for k in (finished[0] if finished else {}) if k != "step" and all(k in m for m in finished)]
    median = {k: statistics.median(m[k] for m in finished) for k in keys}
    median[OBJECTIVE] = statistics.median(scores)
    return {"median": median, "min": min(scores), "max": max(scores), "seeds": len(runs), "runs": runs}


def recheck_seeds(configs: dict[str, TrialConfig], seeds: int, resources: ResourcesConfig, objectives: list[str],
                  log=print, address: str | None = None, num_cpus: int | None = None) -> dict[str, dict]:
    """{key: summarize(its runs)} for each config, trained with `seeds` fresh seeds and judged by `objectives`;
    on the cluster at `address` (or a local Ray of `num_cpus`) unless this process has joined one already."""
    started_here = cluster.connect_ray(address, num_cpus)
    try:
        task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(_train_seed)
        threads = max(1, int(resources.cpu))
        futures = {
            (key, i): task.remote(asdict(cfg), fresh_seed(cfg, i), threads, resources.gpu > 0, objectives)
            for key, cfg in configs.items()
            for i in range(seeds)
        }
        done = dict(zip(futures, ray.get(list(futures.values()))))
    finally:
        cluster.disconnect(started_here)
    out = {}
    for key in configs:
        out[key] = summarize([done[(key, i)] for i in range(seeds)])
        scores = [round(r["metrics"][OBJECTIVE], 4) for r in out[key]["runs"]]
        log(f"re-check {key}: objective over seeds {scores} -> median {out[key]['median'][OBJECTIVE]:.4g}")
    return out


def recheck_candidates(uri: str, top: list[Candidate], seeds: int, resources: ResourcesConfig, objectives: list[str],
                       log=print, address: str | None = None, num_cpus: int | None = None) -> dict[str, dict]:
    """recheck_seeds of the configs in the candidates' best checkpoints, keyed by their child run ids."""
    c = tracking.client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        configs = {cand.run_id: load_checkpoint(tracking.download_best_checkpoint(c, cand.run_id,
                                                                                  Path(tmp) / cand.run_id))[0]
                   for cand in top}
    return recheck_seeds(configs, seeds, resources, objectives, log, address, num_cpus)


def recheck_and_promote(uri: str, cfg: PromoteConfig, objectives: list[str], parent_run_ids: list[str],
                        resources: ResourcesConfig, dry_run: bool = False, log=print, address: str | None = None,
                        num_cpus: int | None = None) -> Decision:
    """The promote: section of a sweep: re-check the top `recheck_top_k` with `recheck_seeds` seeds when asked
    (never in a dry run), then promote ranked by their median objectives."""
    rechecked, shortlisted = None, None
    if cfg.recheck_top_k > 0 and not dry_run:
        shortlisted = shortlist(uri, cfg, objectives, parent_run_ids)  # PromotionRefused before any training
        rechecked = recheck_candidates(uri, shortlisted[0][:cfg.recheck_top_k], cfg.recheck_seeds, resources,
                                       objectives, log, address, num_cpus)
    return promote(uri, cfg, objectives, parent_run_ids, dry_run, rechecked=rechecked, shortlisted=shortlisted)
