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
from ganpipe.objective import OBJECTIVE, describe
from ganpipe.train.checkpoint import read_checkpoint
from ganpipe.train.export import export_generator

CHAMPION, CHALLENGER = "champion", "challenger"


class PromotionRefused(Exception):
    """Nothing can be promoted; the message says why."""


@dataclass
class Candidate:
    """A trial's best checkpoint (its best evaluation under the sweep's objectives) and what it scored."""

    run_id: str
    parent_run_id: str
    trial_id: str
    params: dict
    step: int
    metrics: dict = field(default_factory=dict)  # at the best evaluation: fid, diversity, objective, ...
    recheck: dict | None = None  # a seed re-check's summary of this config (ganpipe.tune.recheck.summarize)

    @property
    def objective(self) -> float:
        return self.metrics.get(OBJECTIVE, math.nan)

    @property
    def score(self) -> float:
        """What ranks it: the median objective over a re-check's seeds, else its best checkpoint's own."""
        return self.recheck["median"][OBJECTIVE] if self.recheck else self.objective

    @property
    def seeds(self) -> int:
        """How many trainings `score` is the median of."""
        return self.recheck["seeds"] if self.recheck else 1

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
        tags = run.data.tags
        name = run.info.run_name
        if run.info.status != "FINISHED":
            skipped.append(f"{name}: {tags.get(tracking.STATUS_TAG, run.info.status.lower())} "
                           f"({tags.get(tracking.REASON_TAG, 'no reason recorded')})")
            continue
        best = tracking.best_values(run)  # the best checkpoint's metrics (tags; older runs: best_* metrics)
        if OBJECTIVE not in best:
            skipped.append(f"{name}: no best checkpoint recorded" if "step" not in best else
                           f"{name}: its best checkpoint was chosen before ganpipe judged by objectives (by fid "
                           "alone); re-run the sweep")
            continue
        found.append(Candidate(
            run_id=run.info.run_id, parent_run_id=parent_run_id, trial_id=tags.get(tracking.TRIAL_TAG, ""),
            params=dict(run.data.params), step=int(best.pop("step", 0)), metrics=best,
        ))
    return found, skipped


# ---- gate and rank ----------------------------------------------------------------------
def outside_gate(m: dict, cfg: PromoteConfig) -> list[str]:
    """Why a best checkpoint's metrics `m` fall outside the gate ([] if they pass)."""
    why = []
    if m.get("fid", math.nan) > cfg.max_fid:
        why.append(f"fid {m['fid']:.4g} > max_fid {cfg.max_fid:g}")
    if m.get("diversity", math.nan) < cfg.min_diversity:
        why.append(f"diversity {m['diversity']:.4g} < min_diversity {cfg.min_diversity:g}")
    if m.get("mode_tv", math.nan) > cfg.max_mode_tv:  # the 2-D mixtures only
        why.append(f"mode_tv {m['mode_tv']:.4g} > max_mode_tv {cfg.max_mode_tv:g}")
    return why


def gate(cands: list[Candidate], cfg: PromoteConfig, objectives: list[str]) -> tuple[list[Candidate], list[str]]:
    """The candidates whose best checkpoint has finite objectives (and fid, diversity) within the gate."""
    passed, refused = [], []
    for cand in cands:
        judged = {k: cand.metrics.get(k, math.nan) for k in dict.fromkeys([*objectives, "fid", "diversity"])}
        if not all(math.isfinite(v) for v in judged.values()):
            refused.append(f"{cand.trial_id}: non-finite metrics (" + ", ".join(f"{k} {v}" for k, v in judged.items())
                           + ")")
        elif outside_gate(cand.metrics, cfg):
            refused.append(f"{cand.trial_id}: " + "; ".join(outside_gate(cand.metrics, cfg)))
        else:
            passed.append(cand)
    return passed, refused


def rank(cands: list[Candidate]) -> list[Candidate]:
    """Best first by score (ganpipe.objective; a re-check's median where one ran); equal scores keep the earlier
    trial first."""
    return sorted(cands, key=lambda c: c.score)


def apply_recheck(ranked: list[Candidate], rechecked: dict[str, dict]) -> list[Candidate]:
    """The candidates re-checked over seeds first, ranked by their median objective, then the others.
    rechecked: child run id -> ganpipe.tune.recheck's summary ({"median": {...}, "min", "max", "seeds"})."""
    checked = [cand for cand in ranked if cand.run_id in rechecked]
    for cand in checked:
        cand.recheck = rechecked[cand.run_id]
    return rank(checked) + [cand for cand in ranked if cand.run_id not in rechecked]


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
    passed, refused = gate(cands, cfg, objectives)
    if not passed:
        raise PromotionRefused("no candidate passes the gate:" + "".join(f"\n  {r}" for r in refused))
    return rank(passed), refused


def promote(uri: str, cfg: PromoteConfig, objectives: list[str], parent_run_ids: list[str], dry_run: bool = False,
            rechecked: dict[str, dict] | None = None,
            shortlisted: tuple[list[Candidate], list[str]] | None = None) -> Decision:
    """Promote the best trial of the sweeps whose parent runs are given.

    rechecked: a seed re-check's summary per child run id (ganpipe.tune.recheck): those candidates rank
    first, by their median objective, and the champion comparison uses that median.
    shortlisted: shortlist(...) of the same arguments when the caller has it already (a re-check chose from it).
    """
    c = tracking.client(uri)
    parents = [tracking.get_run(c, run_id) for run_id in parent_run_ids]
    model_name = cfg.model_name or parents[-1].data.tags.get("ganpipe.sweep", "")
    ranked, refused = shortlisted or shortlist(uri, cfg, objectives, parent_run_ids)
    if rechecked:
        ranked = apply_recheck(ranked, rechecked)
    winner = ranked[0]

    existing = tracking.find_version(c, model_name, winner.source)
    if existing is not None:
        return Decision("unchanged", f"{winner.trial_id} is already version {existing.version} of {model_name}",
                        model_name, existing.version, winner, refused)
    if dry_run:
        return Decision("dry-run", f"would register {winner.trial_id} ({_scored(winner, objectives)}) as a new "
                        f"version of {model_name}", model_name, None, winner, refused)
    return register(c, uri, model_name, winner, refused, objectives)


def _scored(cand: Candidate, objectives: list[str]) -> str:
    """e.g. "mode_tv (min): objective 0.031 (median of 3 seeds, 0.029-0.045)" """
    text = f"{describe(objectives)}: objective {cand.score:.4g}"
    if cand.recheck:
        text += f" (median of {cand.seeds} seeds, {cand.recheck['min']:.4g}-{cand.recheck['max']:.4g})"
    return text


def version_tags(winner: Candidate, objectives: list[str], protocol: dict, sweep: str) -> dict[str, str]:
    """What a model version records of where it came from and how it was judged. fid, diversity and the
    objectives' tags are the re-check's medians when one ran (ganpipe.metrics keeps the checkpoint's own)."""
    medians = winner.recheck["median"] if winner.recheck else {}
    judged = {**winner.metrics, **medians}
    tags = {
        tracking.SOURCE_TAG: winner.source,
        "ganpipe.sweep": sweep,
        "ganpipe.parent_run": winner.parent_run_id,
        "ganpipe.trial_id": winner.trial_id,
        "ganpipe.run_id": winner.run_id,
        "ganpipe.step": str(winner.step),
        "ganpipe.params": json.dumps(winner.params, sort_keys=True),
        "ganpipe.metrics": json.dumps(winner.metrics, sort_keys=True),
        "ganpipe.objectives": json.dumps(objectives),
        "ganpipe.rank_score": repr(winner.score),  # what the champion comparison reads
        "ganpipe.rank_seeds": str(winner.seeds),
        "ganpipe.protocol": json.dumps(protocol, sort_keys=True),
        "ganpipe.protocol_hash": protocol_hash(protocol),
    }
    tags.update({f"ganpipe.{k}": repr(judged[k]) for k in dict.fromkeys([*objectives, "fid", "diversity"])
                 if k in judged})
    if winner.recheck:
        tags["ganpipe.rank_spread"] = json.dumps([winner.recheck["min"], winner.recheck["max"]])  # over the seeds
        tags["ganpipe.recheck_medians"] = json.dumps(medians, sort_keys=True)
    return tags


def judge_against(champion, tags: dict[str, str]) -> tuple[str, str]:
    """(alias, why) for a new version with `tags` against the current champion's version (or None): it
    takes `champion` only on the same protocol and objectives with a strictly better rank score."""
    if champion is None:
        return CHAMPION, "no champion yet"
    if champion.tags.get("ganpipe.protocol_hash") != tags["ganpipe.protocol_hash"]:
        return CHALLENGER, f"champion v{champion.version} was judged on another evaluation protocol"
    if champion.tags.get("ganpipe.objectives") != tags["ganpipe.objectives"]:
        theirs = champion.tags.get("ganpipe.objectives", "[fid] (before objectives were recorded)")
        return CHALLENGER, f"champion v{champion.version} was ranked by other objectives ({theirs})"
    mine, theirs = _rank_text(tags), f"champion v{champion.version} ({_rank_text(champion.tags)})"
    if float(tags["ganpipe.rank_score"]) < float(champion.tags.get("ganpipe.rank_score", "inf")):
        return CHAMPION, f"objective {mine} beats {theirs}"
    return CHALLENGER, f"objective {mine} does not beat {theirs}"


def _rank_text(tags: dict[str, str]) -> str:
    """A version's rank score as its tags say it: "0.043" or "0.043, median of 3 seeds"."""
    seeds = tags.get("ganpipe.rank_seeds", "1")
    return f"{float(tags.get('ganpipe.rank_score', 'inf')):.4g}" + (f", median of {seeds} seeds" if seeds != "1" else "")


def register(c, uri: str, model_name: str, winner: Candidate, refused: list[str], objectives: list[str]) -> Decision:
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_best_checkpoint(c, winner.run_id, Path(tmp))
        protocol = read_checkpoint(path)["protocol"]
        model, example, metadata = export_generator(path)  # G alone: no dataset, no evaluation protocol
    sweep = tracking.get_run(c, winner.parent_run_id).data.tags.get("ganpipe.sweep", "")
    tags = version_tags(winner, objectives, protocol, sweep)
    # read before registering: a failed read (TrackingUnavailable) stops here with nothing registered or moved
    champion = tracking.version_by_alias(c, model_name, CHAMPION)
    version = tracking.register_generator(uri, winner.run_id, model_name, model, example, metadata, tags).version
    outcome, why = judge_against(champion, tags)
    tracking.set_alias(c, model_name, outcome, version)
    return Decision(outcome, f"{model_name} v{version} is {outcome}: {why}", model_name, version, winner, refused)
