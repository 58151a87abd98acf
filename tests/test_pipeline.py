"""Pipelines: validation, narrowing, and the shipped CI pipeline run for real (Ray + sqlite MLflow)."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import browser
from conftest import interrupt_when, sqlite_runs

from ganpipe.config import ConfigError, load_sweep
from ganpipe.pipeline.config import load_pipeline
from ganpipe.pipeline.narrow import narrowing_overrides

ROOT = Path(__file__).resolve().parents[1]


# ---- validation --------------------------------------------------------------------------
def write(folder: Path, data: dict) -> Path:
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_load(path):
    pipeline = load_pipeline(path)
    assert pipeline.stages and pipeline.sweep_path.is_file()


@pytest.mark.parametrize("data,key,fragment", [
    ({"sweep": "s.yaml", "stages": [{"kind": "sweep"}]}, "name", "required"),
    ({"name": "p", "sweep": "missing.yaml", "stages": [{"kind": "sweep"}]}, "sweep", "no sweep file"),
    ({"name": "p", "sweep": "s.yaml", "stages": []}, "stages", "non-empty"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "tune"}]}, "stages[0].kind", "valid: sweep, narrow"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "narrow"}]}, "stages[0].kind", "needs a sweep"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "promote"}, {"kind": "sweep"}]}, "stages[0].kind",
     "needs a sweep"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "sweep"}, {"kind": "recheck", "seeds": 0}]},
     "stages[1].seeds", ">= 1"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "sweep", "top_k": 2}]}, "stages[0].top_k", "unknown key"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "sweep"}, {"kind": "sweep"}]}, "stages[1].name", "unique"),
    ({"name": "p", "sweep": "s.yaml", "stages": [{"kind": "sweep", "set": ["train.steps=-1"]}]},
     "train.steps", "(stage sweep)"),
])
def test_malformed_pipelines_are_reported(tmp_path, data, key, fragment):
    (tmp_path / "s.yaml").write_text((ROOT / "sweeps" / "ring8.yaml").read_text())
    with pytest.raises(ConfigError) as err:
        load_pipeline(write(tmp_path, data))
    assert any(p.key == key and fragment in p.message for p in err.value.problems), err.value


def test_a_stage_problem_names_the_override_list_it_came_from(tmp_path):
    """Overrides come from the pipeline's `set`, the command line's --set and the stage's `set`; a problem
    from one of them names that one, not a "--set" the user never typed."""
    (tmp_path / "s.yaml").write_text((ROOT / "sweeps" / "ring8.yaml").read_text())
    path = write(tmp_path, {"name": "p", "sweep": "s.yaml", "set": ["train.steps=0"],
                            "stages": [{"kind": "sweep", "set": ["data=mnist", "model.widht=3"]}]})
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, ["model.width=0"])
    sources = {p.key: p.file for p in err.value.problems}
    assert sources["train.steps"] == f"{path} set"
    assert sources["model.width"] == "--set"
    assert sources["model.widht"] == f"{path} stages[0].set"  # a key problem of the override itself too
    assert sources["data.root"] == f"{(tmp_path / 's.yaml').resolve()} (with {path} stages[0].set data.dataset)"


# ---- narrowing -------------------------------------------------------------------------------
BROAD_RING8 = """
name: broad
data: ring8
model: {architecture: mlp, ema_decay: {choice: [0.999, 0.99]}}
loss:
  name: {choice: [hinge, ns, wgan-gp]}
  gp_weight: {loguniform: [1.0, 20.0], when: {loss.name: wgan-gp}}
optimizer:
  lr_g: {loguniform: [3e-4, 3e-3]}
  lr_d: {loguniform: [3e-4, 3e-3]}
  beta1: {uniform: [0.0, 0.9]}
train:
  steps: 8000
  n_disc: {int: [1, 5], when: {loss.name: wgan-gp}, default: 1}
"""


def test_narrowing_stays_inside_the_original_space_and_keeps_conditions(tmp_path):
    path = tmp_path / "broad.yaml"
    path.write_text(BROAD_RING8)
    sweep = load_sweep(path)
    best = [
        {"loss.name": "wgan-gp", "loss.gp_weight": "5.0", "optimizer.lr_g": "0.001", "optimizer.lr_d": "0.0005",
         "optimizer.beta1": "0.1", "train.n_disc": "3", "model.ema_decay": "0.999"},
        {"loss.name": "hinge", "optimizer.lr_g": "0.002", "optimizer.lr_d": "0.0007", "optimizer.beta1": "0.3",
         "model.ema_decay": "0.999"},
    ]
    narrow = load_sweep(path, narrowing_overrides(sweep.space, best, 0.1))
    by_path = {p.path: p for p in narrow.space}
    old = {p.path: p for p in sweep.space}
    assert narrow.trial.model.ema_decay == 0.999  # one value left: fixed
    assert by_path["loss.name"].choices == ["hinge", "wgan-gp"]
    for key in ("optimizer.lr_g", "optimizer.lr_d", "optimizer.beta1", "loss.gp_weight"):
        assert old[key].low <= by_path[key].low < by_path[key].high <= old[key].high
        assert by_path[key].high - by_path[key].low < old[key].high - old[key].low
    assert by_path["optimizer.lr_g"].low <= 0.001 and by_path["optimizer.lr_g"].high >= 0.002
    assert by_path["train.n_disc"].when == {"loss.name": ["wgan-gp"]} and by_path["train.n_disc"].default == 1


# ---- the shipped CI pipeline, for real -----------------------------------------------------
def ganpipe(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganpipe.cli", *args], cwd=folder, capture_output=True, text=True,
                          timeout=timeout)


def all_runs(folder: Path, experiment: str):
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = c.get_experiment_by_name(experiment)
    return c, c.search_runs([exp.experiment_id], max_results=1000)


def assert_pipeline_report_renders(c, pipeline_run_id: str, folder: Path) -> None:
    """The pipeline's parent run holds its stability report: one section per sweep stage, the re-check's seed
    spread on the Pareto front, and headless Chromium decodes every figure (skipped only where chromium is
    missing outside CI, as tests/browser.py says)."""
    page = Path(c.download_artifacts(pipeline_run_id, "report", str(folder / "pipeline-report"))) / "index.html"
    html = page.read_text()
    for stage in ("broad", "narrow"):
        assert f"<h2>{stage} <span class='meta'>" in html, stage
    assert "Pareto front" in html and '<table class="findings">' in html
    if not browser.available():
        return
    dom = browser.dump_dom(page.as_uri(), folder)
    body = re.search(r"<body[^>]*>", dom).group(0)
    shown, rendered = (int(re.search(rf'{k}="(\d+)"', body).group(1)) for k in ("data-images", "data-images-rendered"))
    assert shown == rendered >= 2 * 3, body  # each stage's figures and samples, all decoded


@pytest.mark.integration
@pytest.mark.slow
def test_ci_pipeline_runs_every_stage_and_promotes(tmp_path):
    proc = ganpipe(tmp_path, "run", str(ROOT / "pipelines" / "ci-ring8.yaml"), "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    c, runs = all_runs(tmp_path, "ci-ring8")
    (pipeline,) = [r for r in runs if r.data.tags.get("ganpipe.kind") == "pipeline"]
    stages = {r.data.tags["ganpipe.stage"]: r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id}
    assert set(stages) == {"broad", "narrow", "recheck", "promote"}
    assert all(r.info.status == "FINISHED" for r in [pipeline, *stages.values()])
    trials = {s: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stages[s].info.run_id]
              for s in ("broad", "narrow")}
    assert len(trials["broad"]) == 3 and len(trials["narrow"]) == 2
    assert all(r.info.status == "FINISHED" for t in trials.values() for r in t)

    recheck = json.loads(Path(c.download_artifacts(stages["recheck"].info.run_id, "recheck.json", str(tmp_path)))
                         .read_text())
    assert len(recheck) == 2 and all(len(v["runs"]) == 2 for v in recheck.values())
    # new seeds only: the trials trained with train.seed 0, whose results were selected for being good
    assert all([r["seed"] for r in v["runs"]] == [1, 2] for v in recheck.values())
    champion = c.get_model_version_by_alias("ci-ring8", "champion")
    best_recheck = min(recheck.values(), key=lambda v: v["median"]["objective"])
    assert champion.tags["ganpipe.run_id"] == best_recheck["run_id"]  # the re-check decided
    # ranked and tagged by the median of ring8's objective (mode_tv) over the seeds, with its spread
    assert math.isclose(float(champion.tags["ganpipe.rank_score"]), best_recheck["median"]["objective"])
    assert best_recheck["median"]["objective"] == best_recheck["median"]["mode_tv"]
    assert json.loads(champion.tags["ganpipe.rank_spread"]) == [best_recheck["min"], best_recheck["max"]]
    assert champion.tags["ganpipe.rank_seeds"] == "2" and json.loads(champion.tags["ganpipe.objectives"]) == ["mode_tv"]

    assert_pipeline_report_renders(c, pipeline.info.run_id, tmp_path)

    again = ganpipe(tmp_path, "run", str(ROOT / "pipelines" / "ci-ring8.yaml"), "--resume", "--num-cpus", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 4
    assert len(all_runs(tmp_path, "ci-ring8")[1]) == len(runs)  # nothing ran twice


@pytest.mark.integration
@pytest.mark.slow
def test_interrupted_pipeline_resumes_at_the_stage_where_it_stopped(tmp_path):
    pipe = {
        "name": "p-resume", "sweep": str(ROOT / "sweeps" / "ring8.yaml"),
        "set": ["train.steps=1500", "eval.every=500", "search.scheduler.name=none", "search.max_concurrent=1",
                "promote.max_fid=100", "promote.min_diversity=0", "promote.max_mode_tv=1", "promote.model_name=p-resume"],
        "stages": [{"name": "broad", "kind": "sweep", "set": ["search.num_samples=2"]},
                   {"name": "narrow", "kind": "narrow", "top_k": 1, "set": ["search.num_samples=3"]},
                   {"name": "promote", "kind": "promote"}],
    }
    path = write(tmp_path, pipe)
    def narrow_trial_finished():
        runs = sqlite_runs(tmp_path / "mlflow.db")
        narrow = [r for r in runs if r["tags"].get("ganpipe.stage") == "narrow"]
        return bool(narrow) and any(r["tags"].get("mlflow.parentRunId") == narrow[0]["run_id"]
                                    and r["status"] == "FINISHED" for r in runs)

    cmd = [sys.executable, "-m", "ganpipe.cli", "run", str(path), "--num-cpus", "2"]
    # SIGTERM (kill, batch schedulers) is taken as a Ctrl-C; it used to end Python at once, runs left RUNNING
    code, out = interrupt_when(cmd, tmp_path, narrow_trial_finished, sig="SIGTERM")
    assert code == 130, out[-3000:]
    pipeline_run = [r for r in sqlite_runs(tmp_path / "mlflow.db") if r["tags"].get("ganpipe.kind") == "pipeline"]
    assert [r["status"] for r in pipeline_run] == ["KILLED"]

    proc = ganpipe(tmp_path, "run", str(path), "--resume", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage broad (sweep): done before, skipped" in proc.stdout
    _, runs = all_runs(tmp_path, "p-resume")
    stage_runs = {r.data.tags["ganpipe.stage"]: r for r in runs if "ganpipe.stage" in r.data.tags}
    assert set(stage_runs) == {"broad", "narrow", "promote"}
    for stage, expected in (("broad", 2), ("narrow", 3)):
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_runs[stage].info.run_id]
        assert len(kids) == expected and all(k.info.status == "FINISHED" for k in kids)
    assert [r for r in runs if r.data.tags.get("ganpipe.kind") == "pipeline"][0].info.status == "FINISHED"


@pytest.mark.integration
@pytest.mark.slow
def test_chained_narrow_stages_and_a_recheck_gated_like_the_promote_stage(tmp_path):
    """A second narrow stage keeps what the first fixed (it used to search the whole space again); the recheck
    gates with the promote stage's own `set` (it used to take the pipeline's); a gate nobody passes ends the
    pipeline FAILED with exit 1 and a line saying why (it used to be a traceback)."""
    pipe = {
        "name": "p-chain", "sweep": str(ROOT / "sweeps" / "ring8.yaml"),
        "set": ["train.steps=100", "eval.every=100", "search.scheduler.name=none", "promote.max_fid=1e-9",
                "promote.model_name=p-chain"],
        "stages": [{"name": "broad", "kind": "sweep", "set": ["search.num_samples=2"]},
                   {"name": "narrow", "kind": "narrow", "top_k": 1, "margin": 0, "set": ["search.num_samples=1"]},
                   {"name": "narrow2", "kind": "narrow", "top_k": 1, "margin": 1, "set": ["search.num_samples=1"]},
                   {"name": "recheck", "kind": "recheck", "top_k": 1, "seeds": 1},
                   {"name": "promote", "kind": "promote", "set": ["promote.max_fid=1e9", "promote.min_diversity=0",
                                                                  "promote.max_mode_tv=1"]}],
    }
    proc = ganpipe(tmp_path, "run", str(write(tmp_path, pipe)), "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, runs = all_runs(tmp_path, "p-chain")
    stage = {r.data.tags["ganpipe.stage"]: r for r in runs if "ganpipe.stage" in r.data.tags}
    params = {name: [r.data.params for r in runs if r.data.tags.get("mlflow.parentRunId") == stage[name].info.run_id]
              for name in ("narrow", "narrow2")}
    searched = ("loss.name", "optimizer.lr_g", "optimizer.lr_d")
    (first,), (second,) = params["narrow"], params["narrow2"]
    # margin 0 around one trial fixed every searched value; the second narrowing keeps them
    assert not any(k in first for k in searched) and not any(k in second for k in searched), (first, second)
    assert stage["recheck"].info.status == "FINISHED" and stage["promote"].data.tags["ganpipe.status"] == "champion"

    pipe["name"] = "p-gate"  # the gate fails before the recheck starts anything: one small sweep
    pipe["stages"][-1]["set"] = ["promote.max_fid=1e-9"]
    pipe["stages"] = [{"name": "broad", "kind": "sweep", "set": ["search.num_samples=1"]}, *pipe["stages"][3:]]
    proc = ganpipe(tmp_path, "run", str(write(tmp_path, pipe)), "--num-cpus", "2")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    # a refusal is a judgement, not a failure: the pipeline finishes (report logged) and its state says why
    assert "stage recheck: promotion refused: no candidate passes the gate" in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stderr
    _, runs = all_runs(tmp_path, "p-gate")
    pipeline_run = next(r for r in runs if r.data.tags.get("ganpipe.kind") == "pipeline")
    assert pipeline_run.info.status == "FINISHED" and pipeline_run.data.tags["ganpipe.status"] == "refused"
    state = json.loads(next((tmp_path / "ray_results").glob("p-gate*/pipeline.json")).read_text())["stages"]
    assert state["recheck"]["outcome"] == state["promote"]["outcome"] == "refused"
    assert "> max_fid 1e-09" in state["promote"]["message"], state["promote"]
