"""Promotion: gate the trials' best checkpoints, rank them, register the winner. A registry step: it
trains nothing (a seed re-check, on Ray, is ganpipe.tune.recheck, which hands its scores in here).

The `champion` alias moves only when the winner beats the current champion on the
same evaluation protocol; otherwise the new version gets `challenger`. A checkpoint
already registered is never registered again, so promoting twice changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ganpipe import tracking
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.schema import PromoteConfig
from ganpipe.train.checkpoint import read_checkpoint
from ganpipe.train.export import export_generator

CHAMPION, CHALLENGER = "champion", "challenger"


class PromotionRefused(Exception):
    """Nothing can be promoted; the message says why."""


@dataclass
class Candidate:
    run_id: str
    parent_run_id: str
    trial_id: str
    params: dict
    fid: float
    diversity: float
    step: int
    metrics: dict = field(default_factory=dict)
    score: float = math.nan  # what ranks it: fid, or the median fid of a seed re-check

    @property
    def source(self) -> str:
        return f"{self.run_id}@{self.step}"


@dataclass
class Decision:
    outcome: str  # champion | challenger | unchanged | dry-run
    message: str
    model_name: str
    version: str | None = None
    winner: Candidate | None = None
    refused: list[str] = field(default_factory=list)


def protocol_hash(protocol: dict) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


# ---- which runs -------------------------------------------------------------------------
def find_parent(c, experiment: str, parent_run_id: str | None):
    """(experiment, parent run) for `ganpipe promote`; ConfigError naming --experiment or --parent-run."""
    exp = tracking.find_experiment(c, experiment)
    if exp is None:
        known = tracking.some_names(tracking.experiment_names(c, 11))
        raise ConfigError([Problem("--experiment", "experiment",
                                   f"no MLflow experiment named {experiment!r} (experiments: {known})")])
    if parent_run_id:
        run = tracking.find_run(c, parent_run_id)
        if run is None or run.info.experiment_id != exp.experiment_id:
            elsewhere = ""
            if run is not None:
                other = tracking.experiment_name(c, run.info.experiment_id)
                elsewhere = f" (it is in experiment {other!r}: --experiment {other})"
            raise ConfigError([Problem("--parent-run", "parent_run", f"no run {parent_run_id} in experiment "
                                       f"{experiment!r}{elsewhere}; default: its latest sweep run")])
        return exp, run
    latest = tracking.latest_run(c, exp.experiment_id, "sweep")
    if latest is None:
        raise ConfigError([Problem("--experiment", "experiment", f"experiment {experiment!r} has no sweep run")])
    return exp, latest


def candidates(c, experiment_id: str, parent_run_id: str) -> tuple[list[Candidate], list[str]]:
    """Trials with a best checkpoint, and why the other trials are not candidates."""
    found, skipped = [], []
    for run in tracking.children(c, experiment_id, parent_run_id):
        tags, metrics = run.data.tags, run.data.metrics
        name = run.info.run_name
        if run.info.status != "FINISHED":
            skipped.append(f"{name}: {tags.get(tracking.STATUS_TAG, run.info.status.lower())} "
                           f"({tags.get(tracking.REASON_TAG, 'no reason recorded')})")
            continue
        if "best_fid" not in metrics:
            skipped.append(f"{name}: no best checkpoint recorded")
            continue
        found.append(Candidate(
            run_id=run.info.run_id, parent_run_id=parent_run_id, trial_id=tags.get(tracking.TRIAL_TAG, ""), params=dict(run.data.params),
            fid=metrics["best_fid"], diversity=metrics.get("best_diversity", math.nan),
            step=int(metrics.get("best_step", 0)),
            metrics={k[len("best_"):]: v for k, v in metrics.items() if k.startswith("best_")},
        ))
    return found, skipped


# ---- gate and rank ----------------------------------------------------------------------
def gate(cands: list[Candidate], cfg: PromoteConfig) -> tuple[list[Candidate], list[str]]:
    passed, refused = [], []
    for cand in cands:
        if not all(math.isfinite(v) for v in (cand.fid, cand.diversity)):
            refused.append(f"{cand.trial_id}: non-finite metrics (fid {cand.fid}, diversity {cand.diversity})")
        elif cand.fid > cfg.max_fid:
            refused.append(f"{cand.trial_id}: fid {cand.fid:.4g} > max_fid {cfg.max_fid:g}")
        elif cand.diversity < cfg.min_diversity:
            refused.append(f"{cand.trial_id}: diversity {cand.diversity:.4g} < min_diversity {cfg.min_diversity:g}")
        else:
            passed.append(cand)
    return passed, refused


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other candidate beats on both fid (lower) and diversity (higher)."""
    def dominated(a):
        return any(b.fid <= a.fid and b.diversity >= a.diversity and (b.fid < a.fid or b.diversity > a.diversity)
                   for b in cands)
    return [a for a in cands if not dominated(a)]


def rank(cands: list[Candidate], objectives: list[str]) -> list[Candidate]:
    """By fid; with two objectives the Pareto front comes first, each part ordered by fid."""
    for cand in cands:
        cand.score = cand.fid
    if len(objectives) > 1:
        front = pareto_front(cands)
        rest = [c for c in cands if c not in front]
        return sorted(front, key=lambda c: c.fid) + sorted(rest, key=lambda c: c.fid)
    return sorted(cands, key=lambda c: c.fid)


# ---- the whole step --------------------------------------------------------------------
def gathered(c, parent_run_ids: list[str]) -> tuple[list[Candidate], list[str]]:
    """The candidates of every sweep whose parent run is given, and why the other trials are not."""
    cands, skipped = [], []
    for parent_run_id in parent_run_ids:
        parent = tracking.get_run(c, parent_run_id)
        found, why = candidates(c, parent.info.experiment_id, parent_run_id)
        cands += found
        skipped += why
    return cands, skipped


def shortlist(uri: str, cfg: PromoteConfig, objectives: list[str],
              parent_run_ids: list[str]) -> tuple[list[Candidate], list[str]]:
    """(the candidates that pass the gate, ranked; why the others were gated out). The one ranking that
    promotion, its seed re-check and a pipeline's re-check stage all use. PromotionRefused if none passes."""
    cands, skipped = gathered(tracking.client(uri), parent_run_ids)
    if not cands:
        raise PromotionRefused("nothing finished: no trial has a best checkpoint"
                               + ("".join(f"\n  {s}" for s in skipped)))
    passed, refused = gate(cands, cfg)
    if not passed:
        raise PromotionRefused("no candidate passes the gate:" + "".join(f"\n  {r}" for r in refused))
    return rank(passed, objectives), refused


def promote(uri: str, cfg: PromoteConfig, objectives: list[str], parent_run_ids: list[str], dry_run: bool = False,
            scores: dict[str, float] | None = None) -> Decision:
    """Promote the best trial of the sweeps whose parent runs are given.

    scores: an already measured ranking score per child run id (a seed re-check's median fid, lower is
    better: ganpipe.tune.recheck); those candidates rank first, by score.
    """
    c = tracking.client(uri)
    parents = [tracking.get_run(c, run_id) for run_id in parent_run_ids]
    model_name = cfg.model_name or parents[-1].data.tags.get("ganpipe.sweep", "")
    ranked, refused = shortlist(uri, cfg, objectives, parent_run_ids)
    if scores:
        checked = sorted((cand for cand in ranked if cand.run_id in scores), key=lambda cand: scores[cand.run_id])
        for cand in checked:
            cand.score = scores[cand.run_id]
        ranked = checked + [cand for cand in ranked if cand.run_id not in scores]
    winner = ranked[0]

    existing = tracking.find_version(c, model_name, winner.source)
    if existing is not None:
        return Decision("unchanged", f"{winner.trial_id} is already version {existing.version} of {model_name}",
                        model_name, existing.version, winner, refused)
    if dry_run:
        return Decision("dry-run", f"would register {winner.trial_id} (fid {winner.fid:.4g}) as a new version "
                        f"of {model_name}", model_name, None, winner, refused)
    return register(c, uri, model_name, winner, refused)


def register(c, uri: str, model_name: str, winner: Candidate, refused: list[str]) -> Decision:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_best_checkpoint(c, winner.run_id, Path(tmp))
        protocol = read_checkpoint(path)["protocol"]
        model, example, metadata = export_generator(path)  # G alone: no dataset, no evaluation protocol
    tags = {
        tracking.SOURCE_TAG: winner.source,
        "ganpipe.sweep": tracking.get_run(c, winner.parent_run_id).data.tags.get("ganpipe.sweep", ""),
        "ganpipe.parent_run": winner.parent_run_id,
        "ganpipe.trial_id": winner.trial_id,
        "ganpipe.run_id": winner.run_id,
        "ganpipe.step": str(winner.step),
        "ganpipe.params": json.dumps(winner.params, sort_keys=True),
        "ganpipe.metrics": json.dumps(winner.metrics, sort_keys=True),
        "ganpipe.fid": repr(winner.fid),
        "ganpipe.diversity": repr(winner.diversity),
        "ganpipe.rank_score": repr(winner.score),
        "ganpipe.protocol": json.dumps(protocol, sort_keys=True),
        "ganpipe.protocol_hash": protocol_hash(protocol),
    }
    version = tracking.register_generator(uri, winner.run_id, model_name, model, example, metadata, tags).version
    champion = tracking.version_by_alias(c, model_name, CHAMPION)
    if champion is None:
        outcome, why = CHAMPION, "no champion yet"
    elif champion.tags.get("ganpipe.protocol_hash") != tags["ganpipe.protocol_hash"]:
        outcome, why = CHALLENGER, f"champion v{champion.version} was judged on another evaluation protocol"
    elif winner.fid < float(champion.tags.get("ganpipe.fid", "inf")):
        outcome, why = CHAMPION, f"fid {winner.fid:.4g} beats champion v{champion.version} ({champion.tags['ganpipe.fid']})"
    else:
        outcome, why = CHALLENGER, (f"fid {winner.fid:.4g} does not beat champion v{champion.version} "
                                    f"({float(champion.tags.get('ganpipe.fid', 'nan')):.4g})")
    tracking.set_alias(c, model_name, outcome, version)
    return Decision(outcome, f"{model_name} v{version} is {outcome}: {why}", model_name, version, winner, refused)
