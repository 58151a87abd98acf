"""Promotion with real sweeps, a real sqlite MLflow store and real checkpoints."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from ganpipe.config.schema import PromoteConfig
from ganpipe.objective import OBJECTIVE, objective
from ganpipe.promote import Candidate, apply_recheck, gate, judge_against, rank, version_tags


# ---- pure gate / rank ------------------------------------------------------------------
def cand(trial, fid, diversity, objectives=("fid",), **more):
    metrics = {"fid": fid, "diversity": diversity, **more}
    metrics[OBJECTIVE] = objective(metrics, list(objectives))
    return Candidate(run_id=f"r{trial}", parent_run_id="p", trial_id=trial, params={}, step=100, metrics=metrics)


def test_gate_drops_non_finite_too_high_fid_too_low_diversity_and_too_high_mode_tv():
    cands = [cand("a", 0.1, 1.0, mode_tv=0.04), cand("b", math.nan, 1.0), cand("c", 5.0, 1.0), cand("d", 0.2, 0.3),
             cand("e", math.inf, 1.0), cand("f", 0.1, 1.0, mode_tv=0.2)]
    passed, refused = gate(cands, PromoteConfig(max_fid=1.0, min_diversity=0.5, max_mode_tv=0.05), ["fid"])
    assert [c.trial_id for c in passed] == ["a"]
    assert len(refused) == 5
    assert any("b: non-finite" in r for r in refused) and any("c: fid 5 > max_fid 1" in r for r in refused)
    assert any("d: diversity 0.3 < min_diversity 0.5" in r for r in refused)
    assert any("f: mode_tv 0.2 > max_mode_tv 0.05" in r for r in refused)


def test_gate_refuses_a_candidate_whose_objective_is_not_finite():
    c = cand("a", 0.1, 1.0, objectives=("mode_tv",), mode_tv=math.nan)
    passed, refused = gate([c], PromoteConfig(), ["mode_tv"])
    assert not passed and "mode_tv nan" in refused[0]


def test_rank_follows_the_objective_one_or_two():
    by_fid = [cand("a", 0.3, 0.9), cand("b", 0.1, 0.5), cand("c", 0.2, 0.4), cand("d", 0.5, 1.0)]
    assert [c.trial_id for c in rank(by_fid)] == ["b", "c", "a", "d"]
    two = ("fid", "diversity")  # diversity first (to the hundredth), fid between equals
    both = [cand("a", 0.3, 0.9, two), cand("b", 0.1, 0.5, two), cand("c", 0.2, 0.4, two), cand("d", 0.5, 1.0, two),
            cand("e", 0.4, 1.0, two), cand("f", 0.01, 0.904, two)]
    assert [c.trial_id for c in rank(both)] == ["e", "d", "f", "a", "b", "c"]


def test_a_recheck_ranks_by_its_median_and_the_champion_moves_only_on_the_median():
    lucky, steady = cand("lucky", 0.01, 1.0), cand("steady", 0.02, 1.0)
    ranked = rank([lucky, steady])
    assert ranked[0] is lucky  # on the single lucky run
    rechecked = {"rlucky": {"median": {OBJECTIVE: 0.05, "fid": 0.05}, "min": 0.01, "max": 0.3, "seeds": 3},
                 "rsteady": {"median": {OBJECTIVE: 0.025, "fid": 0.025}, "min": 0.02, "max": 0.03, "seeds": 3}}
    ranked = apply_recheck(ranked, rechecked)
    assert [c.trial_id for c in ranked] == ["steady", "lucky"]
    assert [c.score for c in rank(ranked)] == [0.025, 0.05]  # ranking again keeps the medians
    # a re-check of one seed is a re-check too: its score is that seed's, and re-checked candidates come first
    one = apply_recheck(rank([cand("a", 0.01, 1.0), cand("b", 0.02, 1.0)]),
                        {"ra": {"median": {OBJECTIVE: 0.5}, "min": 0.5, "max": 0.5, "seeds": 1}})
    assert [(c.trial_id, c.score, c.seeds) for c in one] == [("a", 0.5, 1), ("b", 0.02, 1)]
    tags = version_tags(ranked[0], ["fid"], {"version": 1}, "s")
    assert tags["ganpipe.rank_score"] == repr(0.025) and tags["ganpipe.fid"] == repr(0.025)
    assert json.loads(tags["ganpipe.rank_spread"]) == [0.02, 0.03] and tags["ganpipe.rank_seeds"] == "3"
    assert json.loads(tags["ganpipe.metrics"])["fid"] == 0.02  # the checkpoint's own evaluation, kept apart

    class Version:  # what MLflow's get_model_version_by_alias returns, as far as the comparison reads it
        def __init__(self, version, tags):
            self.version, self.tags = version, tags

    # a champion whose single lucky run (0.021) beats this median (0.025) keeps its alias
    champion = Version("1", {**tags, "ganpipe.rank_score": repr(0.021), "ganpipe.rank_seeds": "1"})
    outcome, why = judge_against(champion, tags)
    assert outcome == "challenger" and "median of 3 seeds" in why
    assert judge_against(Version("1", {**tags, "ganpipe.rank_score": repr(0.03)}), tags)[0] == "champion"
    other = Version("1", {**tags, "ganpipe.objectives": json.dumps(["mode_tv"]), "ganpipe.rank_score": "1.0"})
    outcome, why = judge_against(other, tags)
    assert outcome == "challenger" and "other objectives" in why
    assert judge_against(None, tags) == ("champion", "no champion yet")


# ---- end to end -------------------------------------------------------------------------

BASE = {
    "name": "t-promote",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32, "ema_decay": 0.99},
    "loss": "hinge",
    "optimizer": {"lr_g": 1e-3, "lr_d": 1e-3},
    "train": {"steps": 600, "batch_size": 64},
    "eval": {"every": 200, "num_samples": 500},
    "search": {"num_samples": 2, "max_concurrent": 2, "sampler": "random",
               "scheduler": {"name": "none"}},
    "promote": {"enabled": True, "max_fid": 100.0},
}


def run(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganpipe.cli", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def sweep(folder: Path, name: str, **changes) -> subprocess.CompletedProcess:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run(folder, "sweep", str(path), "--num-cpus", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def versions(folder: Path, model: str):
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return c, sorted(c.search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version))


def load_in_fresh_process(folder: Path, uri: str, latent_dim: int, n: int = 7) -> dict:
    code = f"""
import json, mlflow, torch
mlflow.set_tracking_uri("sqlite:///{folder / 'mlflow.db'}")
g = mlflow.pytorch.load_model("{uri}")
with torch.no_grad():
    x = g(torch.randn({n}, {latent_dim}))
print(json.dumps({{"shape": list(x.shape), "min": float(x.min()), "max": float(x.max())}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.integration
@pytest.mark.slow
def test_champion_challenger_idempotence_and_gate(tmp_path):
    # 1. a good sweep: its best generator becomes champion, loadable by alias elsewhere
    out = sweep(tmp_path, "good").stdout
    assert "t-promote v1 is champion: no champion yet" in out
    c, vs = versions(tmp_path, "t-promote")
    assert [str(v.version) for v in vs] == ["1"]
    champion = c.get_model_version_by_alias("t-promote", "champion")
    assert champion.version in (1, "1")
    tags = champion.tags
    for key in ("ganpipe.sweep", "ganpipe.parent_run", "ganpipe.trial_id", "ganpipe.params", "ganpipe.metrics",
                "ganpipe.protocol"):
        assert tags[key], key
    assert json.loads(tags["ganpipe.protocol"])["dataset"] == "ring8"
    got = load_in_fresh_process(tmp_path, "models:/t-promote@champion", latent_dim=4)
    assert got["shape"] == [7, 2]

    # 2. promoting again changes nothing
    proc = run(tmp_path, "promote", "--experiment", "t-promote")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is already version 1 of t-promote" in proc.stdout
    assert [str(v.version) for v in versions(tmp_path, "t-promote")[1]] == ["1"]

    # 3. a worse sweep (barely trained) registers a challenger; champion stays
    out = sweep(tmp_path, "worse", train={"steps": 20, "batch_size": 64}, eval={"every": 20, "num_samples": 500},
                optimizer={"lr_g": 1e-5, "lr_d": 1e-5}).stdout
    assert "t-promote v2 is challenger: objective" in out and "does not beat champion v1" in out
    c, vs = versions(tmp_path, "t-promote")
    assert [str(v.version) for v in vs] == ["1", "2"]
    assert c.get_model_version_by_alias("t-promote", "champion").version in (1, "1")
    assert c.get_model_version_by_alias("t-promote", "challenger").version in (2, "2")

    # 4. a gate nothing passes: refused with the reason, nothing registered
    out = sweep(tmp_path, "strict", promote={"enabled": True, "max_fid": 1e-9}).stdout
    assert "refused: no candidate passes the gate" in out and "> max_fid 1e-09" in out
    proc = run(tmp_path, "promote", "--experiment", "t-promote")
    assert proc.returncode == 1
    assert "promotion refused: no candidate passes the gate" in proc.stderr
    assert [str(v.version) for v in versions(tmp_path, "t-promote")[1]] == ["1", "2"]

    # 5. `ganpipe sample` from the alias
    proc = run(tmp_path, "sample", "models:/t-promote@champion", "-n", "16", "-o", "grid.png")
    assert proc.returncode == 0 and (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.integration
@pytest.mark.slow
def test_a_sweeps_own_recheck_promotes_by_the_median_over_fresh_seeds(tmp_path):
    out = sweep(tmp_path, "rechecked", promote={"enabled": True, "recheck_top_k": 1, "recheck_seeds": 2}).stdout
    assert "re-check" in out and "objective over seeds" in out
    c, (version,) = versions(tmp_path, "t-promote")
    tags = version.tags
    low, high = json.loads(tags["ganpipe.rank_spread"])
    medians = json.loads(tags["ganpipe.recheck_medians"])
    assert tags["ganpipe.rank_seeds"] == "2" and low <= float(tags["ganpipe.rank_score"]) <= high
    assert float(tags["ganpipe.rank_score"]) == medians["objective"] == medians["mode_tv"]  # ring8's objective
    assert float(tags["ganpipe.mode_tv"]) == medians["mode_tv"]  # the tag says the median, not the lucky run
    assert float(tags["ganpipe.rank_score"]) == pytest.approx((low + high) / 2)


@pytest.mark.integration
@pytest.mark.slow
def test_diverged_trial_is_never_promoted(tmp_path):
    out = sweep(
        tmp_path, "mixed", loss="lsgan",
        optimizer={"lr_g": 1e-3, "lr_d": {"choice": [1e12, 1e-3]}},
        search={"num_samples": 4, "max_concurrent": 2, "sampler": "random", "seed": 0, "scheduler": {"name": "none"}},
        failure={"max_failures": 0},
    ).stdout
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kids = [r for r in c.search_runs([c.get_experiment_by_name("t-promote").experiment_id])
            if "mlflow.parentRunId" in r.data.tags]
    diverged = {r.info.run_id for r in kids if r.data.tags.get("ganpipe.status") == "diverged"}
    healthy = {r.info.run_id for r in kids if r.info.status == "FINISHED"}
    assert diverged and healthy, out[-2000:]  # the seed gives both kinds
    champion = c.get_model_version_by_alias("t-promote", "champion")
    assert champion.tags["ganpipe.run_id"] in healthy


@pytest.mark.integration
@pytest.mark.slow
def test_image_champion_maps_z_to_images_in_range(tmp_path):
    sweep(
        tmp_path, "digits", data="digits",
        model={"architecture": "dcgan", "latent_dim": 8, "width": 8},
        train={"steps": 40, "batch_size": 32}, eval={"every": 20},
        search={"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}},
        promote={"enabled": True, "max_fid": 1e9},
    )
    got = load_in_fresh_process(tmp_path, "models:/t-promote@champion", latent_dim=8, n=5)
    assert got["shape"] == [5, 1, 8, 8]
    assert -1.0 <= got["min"] <= got["max"] <= 1.0


@pytest.mark.integration
@pytest.mark.slow
def test_conditional_and_translator_champions_load_by_alias_with_their_inputs(tmp_path):
    """Promotion of the image tasks: a conditional G takes [z | one-hot class], a translator images."""
    one_trial = {"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}}
    sweep(tmp_path, "cond", data="digits",
          model={"architecture": "resnet", "conditional": True, "latent_dim": 8, "width": 8},
          train={"steps": 40, "batch_size": 32}, eval={"every": 20}, search=one_trial,
          promote={"enabled": True, "max_fid": 1e9, "model_name": "t-cond"})
    sweep(tmp_path, "tr", data="digits-translation", model={"architecture": "dcgan", "width": 8},
          loss="lsgan", train={"steps": 40, "batch_size": 16}, eval={"every": 20}, search=one_trial,
          promote={"enabled": True, "max_fid": 1e9, "model_name": "t-tr"})
    code = f"""
import json, mlflow, torch
mlflow.set_tracking_uri("sqlite:///{tmp_path / 'mlflow.db'}")
cond = mlflow.pytorch.load_model("models:/t-cond@champion")
x = torch.cat([torch.randn(5, 8), torch.nn.functional.one_hot(torch.arange(5), 10).float()], 1)
tr = mlflow.pytorch.load_model("models:/t-tr@champion")
info = mlflow.models.get_model_info("models:/t-tr@champion")
with torch.no_grad():
    print(json.dumps({{"cond": list(cond(x).shape), "tr": list(tr(torch.zeros(3, 3, 8, 8)).shape),
                      "kind": info.metadata["ganpipe_kind"]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"cond": [5, 1, 8, 8], "tr": [3, 3, 8, 8], "kind": "translator"}
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    protocol = json.loads(c.get_model_version_by_alias("t-cond", "champion").tags["ganpipe.protocol"])
    assert protocol["conditional"] == {"labels": "balanced", "n_classes": 10}
    protocol = json.loads(c.get_model_version_by_alias("t-tr", "champion").tags["ganpipe.protocol"])
    assert protocol["task"] == "translation"


# ---- bad input: exit 2, one line naming the option, nothing created -------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with ring8 v1 as champion, and a checkpoint of the same (untrained) generator."""
    from conftest import register_export
    from ganpipe.config.schema import DataConfig, EvalConfig, ModelConfig, TrainConfig, TrialConfig
    from ganpipe.train.loop import Trainer

    folder = tmp_path_factory.mktemp("store")
    trainer = Trainer(TrialConfig(data=DataConfig("ring8"), model=ModelConfig(architecture="mlp", latent_dim=4, width=8),
                                  train=TrainConfig(steps=2, batch_size=16), eval=EvalConfig(every=2, num_samples=100)))
    uri, version = register_export(folder, trainer, "ring8")
    MlflowClient(uri).set_registered_model_alias("ring8", "champion", version.version)
    return uri, trainer.save_checkpoint(folder / "ck")


def bad(capsys, *args: str) -> str:
    from ganpipe import cli

    assert cli.main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    return err


@pytest.mark.integration
@pytest.mark.parametrize("source,expect,allowed", [
    ("models:/nope@champion", "no registered model 'nope' in sqlite:///", "(registered: ring8)"),
    ("models:/ring8@nope", "model 'ring8' has no alias 'nope'", "(aliases: champion)"),
    ("models:/ring8/7", "Model Version (name=ring8, version=7) not found", ""),
    ("runs:/deadbeef/generator", "Run with id=deadbeef not found", ""),
])
def test_sample_of_an_unknown_model_exits_2_naming_the_source(store, tmp_path, capsys, source, expect, allowed):
    err = bad(capsys, "sample", source, "--tracking-uri", store[0], "-o", str(tmp_path / "s.png"))
    assert err.startswith(f"{source}: source: {expect}") and err.endswith(f"{allowed}\n") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_sample_of_a_run_without_a_model_says_where_its_checkpoint_is(store, tmp_path, capsys):
    c = MlflowClient(store[0])
    run_id = c.create_run(c.get_experiment_by_name("ring8").experiment_id).info.run_id  # a trial's run, say
    err = bad(capsys, "sample", f"runs:/{run_id}/generator", "--tracking-uri", store[0], "-o", str(tmp_path / "s.png"))
    assert f"mlflow artifacts download -r {run_id} -a best_checkpoint -d DIR, then ganpipe sample DIR" in err


@pytest.mark.integration
def test_sample_checks_the_output_suffix_and_the_source_before_loading(store, tmp_path, capsys):
    uri, ckpt = store
    err = bad(capsys, "sample", "models:/ring8@champion", "--tracking-uri", uri, "-o", str(tmp_path / "out.txt"))
    assert err == f"-o: out: {tmp_path / 'out.txt'} must end in .png or .npy\n"
    err = bad(capsys, "sample", "models:/ring8@nope", "--tracking-uri", uri, "-o", "out.PNG")
    assert err.splitlines() == ["-o: out: out.PNG must end in .png or .npy",
                                "models:/ring8@nope: source: model 'ring8' has no alias 'nope' (aliases: champion)"]
    assert list(tmp_path.iterdir()) == []
    from ganpipe import cli

    assert cli.main(["sample", "models:/ring8@champion", "--tracking-uri", uri, "-o", str(tmp_path / "s.npy")]) == 0
    assert cli.main(["sample", str(ckpt), "-o", str(tmp_path / "c.npy")]) == 0
    # a folder that cannot be made (a file stands where it would go): one line and exit 2, not a traceback
    (tmp_path / "file").write_text("x")
    err = bad(capsys, "sample", str(ckpt), "-o", str(tmp_path / "file" / "s.png"))
    assert err.startswith(f"-o: out: cannot write {tmp_path / 'file' / 's.png'}") and len(err.splitlines()) == 1


def test_sample_of_a_missing_or_foreign_checkpoint_exits_2_in_one_line(tmp_path, capsys):
    text, empty = tmp_path / "hostname", tmp_path / "empty"
    text.write_text("myhost\n")  # like /etc/hostname: torch.load raises a long UnpicklingError
    empty.mkdir()
    for source, expect in [
        (tmp_path / "nope.pt", "no such file or folder; expected models:/NAME@ALIAS, "),
        (text, "not a ganpipe checkpoint (UnpicklingError reading it)"),
        (empty, "the folder holds no checkpoint.pt"),
        ("http://x", "not a model MLflow can open (ValueError: "),  # MLflow itself fails to parse it
    ]:
        err = bad(capsys, "sample", str(source), "-o", str(tmp_path / "s.png"))
        assert err.startswith(f"{source}: source: {expect}") and err.count("\n") == 1, err
    assert not (tmp_path / "s.png").exists()


def test_sample_and_promote_never_create_a_missing_sqlite_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default store is ./mlflow.db
    db = tmp_path / "mlflow.db"
    err = bad(capsys, "sample", "models:/nope@champion", "-o", "g.png")
    assert err == f"models:/nope@champion: source: not found: the tracking store sqlite:///{db} does not exist " \
                  "(--tracking-uri, $MLFLOW_TRACKING_URI)\n"
    err = bad(capsys, "promote", "--experiment", "nope")
    assert err.startswith(f"--experiment: experiment: no MLflow experiment named 'nope': the tracking store "
                          f"sqlite:///{db} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_sample_and_promote_with_an_unreachable_tracking_server_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["sample", "models:/ring8@champion", "--tracking-uri", "http://127.0.0.1:9"],
                 ["promote", "--experiment", "ring8", "--tracking-uri", "http://127.0.0.1:9"]):
        err = bad(capsys, *args)
        assert err.startswith("--tracking-uri: tracking.uri: tracking server http://127.0.0.1:9 is unreachable")
        assert err.count("\n") == 1, err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert bad(capsys, "sample", "runs:/deadbeef/generator").startswith("--tracking-uri: tracking.uri: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_promote_of_an_unknown_experiment_or_parent_run_exits_2_naming_the_option(store, capsys):
    uri = store[0]
    err = bad(capsys, "promote", "--experiment", "nope", "--tracking-uri", uri)
    assert err.startswith("--experiment: experiment: no MLflow experiment named 'nope' (experiments: ")
    assert "ring8" in err and err.count("\n") == 1
    err = bad(capsys, "promote", "--experiment", "ring8", "--parent-run", "deadbeef", "--tracking-uri", uri)
    assert err == "--parent-run: parent_run: no run deadbeef in experiment 'ring8'; default: its latest sweep run\n"
    other = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("ring8").experiment_id])[0]
    err = bad(capsys, "promote", "--experiment", "Default", "--parent-run", other.info.run_id, "--tracking-uri", uri)
    assert err.startswith(f"--parent-run: parent_run: no run {other.info.run_id} in experiment 'Default' "
                          "(it is in experiment 'ring8': --experiment ring8)")
    err = bad(capsys, "promote", "--experiment", "ring8", "--parent-run", other.info.run_id, "--tracking-uri", uri)
    assert err.startswith(f"--parent-run: parent_run: run {other.info.run_id} is no sweep's parent run")
    err = bad(capsys, "promote", "--experiment", "ring8", "--tracking-uri", uri)
    assert err == "--experiment: experiment: experiment 'ring8' has no sweep run\n"
