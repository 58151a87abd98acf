"""`ganpipe run PIPELINE.yaml`: stages in order under one MLflow parent run, resumable by stage.

The pipeline folder (under --storage: a folder, or an S3 prefix) keeps `pipeline.json`:
each stage's status and outputs (its MLflow run, narrowing overrides, re-check scores).
`--resume` skips the stages that are done and continues an interrupted sweep stage with
Tune's restore.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ganpipe import cluster, tracking
from ganpipe.config import ConfigError, Problem, first_values, resolve_trial
from ganpipe.pipeline.config import Pipeline, Stage
from ganpipe.objective import OBJECTIVE
from ganpipe.pipeline.narrow import narrowing_overrides
from ganpipe.preflight import check_client_mode, check_data, check_local_resources, load_checked_sweep, parse_storage
from ganpipe.promote import PromotionRefused, gathered, promote, rank, shortlist
from ganpipe.tune.driver import SweepOptions, run_sweep
from ganpipe.tune.recheck import recheck_and_promote, recheck_candidates
from ganpipe.tune.storage import Location

STATE_FILE = "pipeline.json"
SWEEP_KINDS = ("sweep", "narrow")


@dataclass
class PipelineOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    num_cpus: int | None = None


class Context:
    """What the stages share: the pipeline, the tracking store, the folder and the saved state."""

    def __init__(self, pipeline: Pipeline, opts: PipelineOptions, uri: str, folder: Location, state: dict):
        self.pipeline, self.opts, self.uri, self.folder, self.state = pipeline, opts, uri, folder, state
        self.client = tracking.client(uri)

    def save(self) -> None:
        (self.folder / STATE_FILE).write_text(json.dumps(self.state, indent=2))

    def stage_state(self, stage: Stage) -> dict:
        return self.state["stages"].setdefault(stage.name, {"kind": stage.kind, "status": "pending"})

    def sweep_stages(self) -> list[dict]:
        """States of the sweep-like stages done so far, in order."""
        return [s for s in self.state["stages"].values() if s["kind"] in SWEEP_KINDS and s["status"] == "done"]

    def sweep_parents(self) -> list[str]:
        return [s["parent_run_id"] for s in self.sweep_stages()]

    def promote_stage_set(self, stage: Stage) -> list[str]:
        """The `set` of the promote stage after `stage` (whose gate a recheck applies first), if any."""
        after = self.pipeline.stages[self.pipeline.stages.index(stage) + 1:]
        return next((s.set for s in after if s.kind == "promote"), [])

    def nested_tags(self, stage: Stage) -> dict[str, str]:
        return {tracking.PARENT_TAG: self.state["run_id"], "ganpipe.stage": stage.name,
                "ganpipe.pipeline": self.pipeline.name}

    def stage_run(self, stage: Stage) -> str:
        experiment_id = tracking.ensure_experiment(self.client, self.pipeline.name)
        tags = {**self.nested_tags(stage), "ganpipe.kind": stage.kind}
        return tracking.start_parent_run(self.client, experiment_id, f"{stage.name}", tags)


class StageFailed(Exception):
    """A stage ran and failed; the pipeline ends FAILED with exit 1 (--resume reruns that stage afresh)."""


# ---- stages --------------------------------------------------------------------------------
def _run_sweep_stage(ctx: Context, stage: Stage, st: dict, overrides: list[str]) -> bool:
    sweep = load_checked_sweep(ctx.pipeline.sweep_path, overrides)
    resuming = st["status"] == "running"
    st["status"] = "running"
    ctx.save()
    opts = SweepOptions(
        address=ctx.opts.address, tracking_uri=ctx.uri, storage=(ctx.folder / stage.name).uri, resume=resuming,
        num_cpus=ctx.opts.num_cpus, experiment=ctx.pipeline.name, parent_tags=ctx.nested_tags(stage), promote=False,
        overrides=list(overrides), resume_hint=False,
    )
    outcome = run_sweep(sweep, ctx.pipeline.sweep_path.read_text(), opts)
    st["parent_run_id"] = outcome.run.parent_run_id
    st["overrides"] = overrides
    if outcome.exit_code == 1:  # every trial failed: nothing for the stages after it to work on
        st["status"] = "failed"  # --resume starts this stage's sweep afresh (Tune would not re-run errored trials)
        raise StageFailed(f"stage {stage.name}: every trial of its sweep failed (see its table above)")
    if outcome.done:
        st["status"] = "done"
    return outcome.done


def run_sweep_stage(ctx: Context, stage: Stage, st: dict) -> bool:
    return _run_sweep_stage(ctx, stage, st, ctx.pipeline.set + stage.set)


def best_children(ctx: Context, parent_run_ids: list[str], objectives: list[str], top_k: int) -> list:
    """The top-k finished trials in promotion's order (ungated: a narrow stage searches around them)."""
    found = [c for c in gathered(ctx.client, parent_run_ids)[0] if all(math.isfinite(c.metrics.get(o, math.nan))
                                                                         for o in objectives)]
    return rank(found)[:top_k]


def run_narrow_stage(ctx: Context, stage: Stage, st: dict) -> bool:
    if "narrowing" not in st:  # computed once, so a resumed stage runs the same space
        previous = ctx.sweep_stages()[-1]
        base = load_checked_sweep(ctx.pipeline.sweep_path, previous["overrides"])
        best = best_children(ctx, [previous["parent_run_id"]], base.search.objectives, stage.top_k)
        if not best:
            st["status"] = "failed"
            raise StageFailed(f"stage {stage.name}: the previous sweep has no finished trial to narrow around")
        new = narrowing_overrides(base.space, [c.params for c in best], stage.margin)
        # after another narrow stage: its narrowing stays (what it fixed is no longer in `base.space`), then this
        st["narrowing"] = previous.get("narrowing", []) + new
        st["around"] = [c.trial_id for c in best]
        ctx.save()
        print(f"stage {stage.name}: narrowing around {', '.join(st['around'])}:")
        for line in new:
            print(f"  --set {line}")
    return _run_sweep_stage(ctx, stage, st, ctx.pipeline.set + st["narrowing"] + stage.set)


def run_recheck_stage(ctx: Context, stage: Stage, st: dict) -> bool:
    sweep = load_checked_sweep(ctx.pipeline.sweep_path, ctx.pipeline.set + ctx.promote_stage_set(stage))
    run_id = ctx.stage_run(stage)
    try:  # the gate and the ranking of the promote stage after it
        ranked, _ = shortlist(ctx.uri, sweep.promote, sweep.search.objectives, ctx.sweep_parents())
    except PromotionRefused as err:
        # a judgement, not a failure: no trial is good enough to re-check, so the promotion is refused here
        # (the promote stage records the same refusal) and the pipeline finishes with its report
        tracking.end_run(ctx.client, run_id, "FAILED", str(err), "refused")
        st.update(status="done", run_id=run_id, outcome="refused", message=str(err))
        print(f"stage {stage.name}: promotion refused: {err}")
        return True
    top = ranked[: stage.top_k]
    results = recheck_candidates(ctx.uri, top, stage.seeds, sweep.resources, sweep.search.objectives,
                                 address=ctx.opts.address, num_cpus=ctx.opts.num_cpus)
    by_trial = {c.run_id: c.trial_id for c in top}
    tracking.log_texts(ctx.client, run_id, {"recheck.json": json.dumps(
        {by_trial[k]: {**v, "run_id": k} for k, v in results.items()}, indent=2, default=str)})
    tracking.log_metrics(ctx.client, run_id, {f"median_{OBJECTIVE}.{by_trial[k]}": v["median"][OBJECTIVE]
                                              for k, v in results.items()})
    tracking.end_run(ctx.client, run_id, "FINISHED", ganpipe_status="finished")
    # the summaries without each seed's metrics (in recheck.json): what the promote stage ranks by
    st.update(status="done", run_id=run_id, rechecked={k: {key: v[key] for key in ("median", "min", "max", "seeds")}
                                                       for k, v in results.items()})
    return True


def run_promote_stage(ctx: Context, stage: Stage, st: dict) -> bool:
    sweep = load_checked_sweep(ctx.pipeline.sweep_path, ctx.pipeline.set + stage.set)
    recheck = next((s for s in reversed(list(ctx.state["stages"].values()))
                    if s["kind"] == "recheck" and s["status"] == "done"), {})
    rechecked = recheck.get("rechecked")
    run_id = ctx.stage_run(stage)
    try:
        if recheck.get("outcome") == "refused":  # the re-check found no candidate through this same gate
            raise PromotionRefused(recheck["message"])
        if rechecked:  # a recheck stage ran: its medians rank, no second re-check
            decision = promote(ctx.uri, sweep.promote, sweep.search.objectives, ctx.sweep_parents(),
                               rechecked=rechecked)
        else:
            decision = recheck_and_promote(ctx.uri, sweep.promote, sweep.search.objectives, ctx.sweep_parents(),
                                           sweep.resources, address=ctx.opts.address, num_cpus=ctx.opts.num_cpus)
    except PromotionRefused as err:
        tracking.end_run(ctx.client, run_id, "FAILED", str(err), "refused")
        st.update(status="done", run_id=run_id, outcome="refused", message=str(err))
        print(f"stage {stage.name}: promotion refused: {err}")
        return True
    tracking.set_tag(ctx.client, run_id, "ganpipe.decision", decision.message)
    tracking.end_run(ctx.client, run_id, "FINISHED", ganpipe_status=decision.outcome)
    st.update(status="done", run_id=run_id, outcome=decision.outcome, message=decision.message,
              model=decision.model_name, version=str(decision.version))
    print(f"stage {stage.name}: {decision.message}")
    return True


RUNNERS = {"sweep": run_sweep_stage, "narrow": run_narrow_stage, "recheck": run_recheck_stage,
           "promote": run_promote_stage}


# ---- the whole pipeline -----------------------------------------------------------------------
def open_pipeline(pipeline: Pipeline, opts: PipelineOptions) -> Context:
    uri = tracking.resolve_uri(opts.tracking_uri)
    why = tracking.check_reachable(uri)
    if why:
        raise ConfigError([Problem("--tracking-uri", "tracking.uri", why)])
    storage = parse_storage(opts.storage)  # an S3 prefix is checked here, before any MLflow run
    check_client_mode(cluster.resolve_address(opts.address) if opts.address else None, uri, opts.storage is not None)
    # what every sweep stage's own checks would refuse later, refused before the pipeline's run and folder exist
    for stage in pipeline.stages:
        if stage.kind in SWEEP_KINDS:
            sweep = load_checked_sweep(pipeline.sweep_path, pipeline.set + stage.set)
            if not opts.address and not cluster.is_connected():
                check_local_resources(sweep, opts.num_cpus)
            check_data(resolve_trial(sweep, first_values(sweep.space, sweep.trial)), sweep.source or "sweep",
                       keep=False)
    if opts.resume:
        found = [p for p in storage.stamped(pipeline.name) if (p / STATE_FILE).exists()]
        if not found:
            raise ConfigError([Problem("--resume", "resume", f"no pipeline {pipeline.name!r} to resume under {storage}")])
        folder = found[-1]
        state = json.loads((folder / STATE_FILE).read_text())
        ctx = Context(pipeline, opts, uri, folder, state)
        tracking.reopen(ctx.client, state["run_id"])
        return ctx
    folder = storage.stamped_folder(pipeline.name)
    folder.mkdir()
    ctx = Context(pipeline, opts, uri, folder, {"stages": {}})
    experiment_id = tracking.ensure_experiment(ctx.client, pipeline.name)
    ctx.state["run_id"] = tracking.start_parent_run(
        ctx.client, experiment_id, folder.name, {"ganpipe.kind": "pipeline", "ganpipe.pipeline": pipeline.name,
                                                 "ganpipe.folder": folder.uri})
    tracking.log_texts(ctx.client, ctx.state["run_id"], {"pipeline.yaml": Path(pipeline.source).read_text(),
                                                         "sweep.yaml": pipeline.sweep_path.read_text()})
    ctx.save()
    return ctx


def end_failed(ctx: Context, reason: str) -> None:
    """End FAILED, with `reason`, every run of the pipeline still RUNNING: the stage runs (and their trials')
    and the pipeline's own, as trials end. Never raises: the store may be the reason the stage failed."""
    try:
        c, run_id = ctx.client, ctx.state["run_id"]
        experiment_id = tracking.get_run(c, run_id).info.experiment_id
        for stage_run in tracking.children(c, experiment_id, run_id):
            if stage_run.info.status == "RUNNING":
                info = stage_run.info
                tracking.close_running_children(c, info.experiment_id, info.run_id, "FAILED", reason)
                tracking.end_run(c, info.run_id, "FAILED", reason, "failed")
        tracking.end_run(c, run_id, "FAILED", reason, "failed")
    except Exception as err:  # noqa: BLE001 - reported; the stage's own error is what propagates
        print(f"ganpipe: could not mark the pipeline's runs FAILED ({type(err).__name__}: {err})", file=sys.stderr)


def run_pipeline(pipeline: Pipeline, opts: PipelineOptions) -> int:
    ctx = open_pipeline(pipeline, opts)
    print(f"pipeline {pipeline.name}: {len(pipeline.stages)} stages, folder {ctx.folder}, MLflow {ctx.uri}")
    stage = pipeline.stages[0]
    try:
        for stage in pipeline.stages:
            st = ctx.stage_state(stage)
            if st["status"] == "done":
                print(f"stage {stage.name} ({stage.kind}): done before, skipped")
                continue
            print(f"\n=== stage {stage.name} ({stage.kind}) ===")
            finished = RUNNERS[stage.kind](ctx, stage, st)
            ctx.save()
            if not finished:
                tracking.end_run(ctx.client, ctx.state["run_id"], "KILLED",
                                 f"interrupted in stage {stage.name}; resume with --resume", "killed")
                print(f"\npipeline interrupted in stage {stage.name}: ganpipe run {pipeline.source} --resume"
                      f" --storage {ctx.folder.parent}")
                return 130
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside a sweep's own graceful stop (a recheck, a promotion)
        ctx.save()
        experiment_id = tracking.get_run(ctx.client, ctx.state["run_id"]).info.experiment_id
        tracking.close_running_children(ctx.client, experiment_id, ctx.state["run_id"], "KILLED", "pipeline interrupted")
        tracking.end_run(ctx.client, ctx.state["run_id"], "KILLED", "interrupted; resume with --resume", "killed")
        print(f"\npipeline interrupted: ganpipe run {pipeline.source} --resume --storage {ctx.folder.parent}")
        return 130
    except StageFailed as err:
        ctx.save()
        end_failed(ctx, str(err))
        print(f"\npipeline {pipeline.name} failed: {err}")
        return 1
    except BaseException as err:  # a stage raised: its runs and the pipeline's end FAILED with why
        end_failed(ctx, f"stage {stage.name}: {type(err).__name__}: {err}")
        raise
    promoted = [s for s in ctx.state["stages"].values() if s["kind"] == "promote"]
    # a recheck stage without a promote stage after it may refuse too
    refused = [s for s in ctx.state["stages"].values() if s.get("outcome") == "refused"]
    tracking.end_run(ctx.client, ctx.state["run_id"], "FINISHED", ganpipe_status="refused" if refused else "finished")
    from ganpipe.report import log_report

    print(log_report(ctx.uri, ctx.state["run_id"]))  # every stage's sweep on one page; a note if it fails
    print(f"\npipeline {pipeline.name} finished; state: {ctx.folder / STATE_FILE}")
    for s in promoted or refused:
        print(f"  {s.get('message', '')}")
    return 1 if refused else 0
