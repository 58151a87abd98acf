"""`ganpipe sweep` on a real local Ray (2 CPUs) with a real sqlite MLflow store.

Each sweep runs as its own `ganpipe` process, as a user runs it, so Ray is started
and shut down by the command itself and nothing is left running after a test.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import cmdline, descendants, interrupt_when, orphan_scratch, sqlite_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = {
    "name": "t-sweep",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32, "ema_decay": {"choice": [0.0, 0.9]}},
    "loss": {
        "name": {"choice": ["ns", "hinge", "wgan-gp"]},
        "gp_weight": {"loguniform": [1.0, 10.0], "when": {"loss.name": "wgan-gp"}},
    },
    "optimizer": {"lr_g": {"loguniform": [1e-4, 3e-3]}, "lr_d": 1e-3},
    "train": {"steps": 300, "batch_size": 64},
    "eval": {"every": 100, "num_samples": 500},
    "search": {
        "num_samples": 6, "sampler": "tpe", "seed": 1, "max_concurrent": 2,
        "scheduler": {"name": "asha", "grace_period": 100, "reduction_factor": 2},
    },
    "resources": {"cpu": 1},
}


def write_sweep(folder: Path, **changes) -> Path:
    data = json.loads(json.dumps(SWEEP))
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            data.setdefault(section, {})[leaf] = value
        else:
            data[section] = value
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ganpipe(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ganpipe.cli", *args, "--num-cpus", "2"] if args[0] == "sweep" and "--dry-run" not in args
        else [sys.executable, "-m", "ganpipe.cli", *args],
        cwd=folder, capture_output=True, text=True, timeout=timeout,
    )


def runs(folder: Path, experiment: str):
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = c.get_experiment_by_name(experiment)
    all_runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    kids = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return c, parents, kids


def optuna_states(folder: Path) -> Counter:
    (db,) = (folder / "ray_results").glob("*/optuna.db")
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    return Counter(t.state.name for t in study.trials)


def test_sweep_tracks_every_trial_once_with_conditional_params(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ranked trials" in proc.stdout and "ganpipe ui --tracking-uri" in proc.stdout

    c, parents, kids = runs(tmp_path, "t-sweep")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(kids) == 6
    assert len({k.data.tags["ganpipe.trial_id"] for k in kids}) == 6
    assert all(k.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for k in kids)
    assert all(r.info.status != "RUNNING" for r in parents + kids)

    losses = set()
    for kid in kids:
        fid = c.get_metric_history(kid.info.run_id, "fid")
        div = c.get_metric_history(kid.info.run_id, "diversity")
        assert fid and div and len({m.step for m in fid}) == len(fid)  # no step logged twice
        samples = [a.path for a in c.list_artifacts(kid.info.run_id, "samples")]
        assert samples and all(p.endswith(".png") for p in samples)
        params = kid.data.params
        losses.add(params["loss.name"])
        assert ("loss.gp_weight" in params) == (params["loss.name"] == "wgan-gp")
    assert "wgan-gp" in losses and len(losses) > 1  # the condition was exercised both ways

    statuses = Counter(k.data.tags["ganpipe.status"] for k in kids)
    assert statuses["early-stopped"] >= 1, statuses  # ASHA stopped at least one trial
    artifacts = {a.path for a in c.list_artifacts(parents[0].info.run_id)}
    assert {"sweep.yaml", "resolved_config.yaml", "results.csv", "results.md", "optuna_history.png"} <= artifacts
    table = Path(c.download_artifacts(parents[0].info.run_id, "results.csv", str(tmp_path)))
    ranked = list(csv.DictReader(table.read_text().splitlines()))
    assert sorted(row["trial_id"] for row in ranked) == sorted(
        k.data.tags["ganpipe.trial_id"] for k in kids)  # every trial ranked once, under its own id
    assert optuna_states(tmp_path) == Counter(COMPLETE=6)

    # one rule for best (ring8's default objective, mode_tv): each trial is ranked by, and keeps for promotion,
    # the evaluation that none of its others beat, the earliest of equals; the study learned that evaluation
    by_run = {k.info.run_id: k for k in kids}
    objectives = [float(row["objective"]) for row in ranked]
    assert objectives == sorted(objectives)
    for row in ranked:
        history = c.get_metric_history(row["mlflow_run_id"], "objective")
        best = min(history, key=lambda m: (m.value, m.step))
        assert (float(row["objective"]), int(float(row["step"]))) == (best.value, best.step)
        mode_tv = {m.step: m.value for m in c.get_metric_history(row["mlflow_run_id"], "mode_tv")}
        assert best.value == mode_tv[best.step]
        kept = {k: float(v) for k, v in by_run[row["mlflow_run_id"]].data.tags.items()
                if k.startswith("ganpipe.best.")}
        assert (kept["ganpipe.best.objective"], kept["ganpipe.best.step"], kept["ganpipe.best.mode_tv"]) == (
            best.value, best.step, best.value)
    (db,) = (tmp_path / "ray_results").glob("*/optuna.db")
    study = optuna.load_study(study_name=db.parent.name, storage=f"sqlite:///{db}")
    assert sorted(t.value for t in study.trials) == objectives


def test_diverged_trial_is_failed_not_scored(tmp_path):
    path = write_sweep(
        tmp_path, optimizer={"lr_g": 1e12, "lr_d": 1e12}, loss="lsgan",
        model={"architecture": "mlp", "latent_dim": 4, "width": 32},
        search={"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}},
        failure={"max_failures": 1},
    )
    proc = ganpipe(tmp_path, "sweep", str(path))
    # its only trial diverged: nothing to rank, the sweep ran and failed
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep failed" in proc.stdout and "every trial failed (1)" in proc.stdout
    _, parents, kids = runs(tmp_path, "t-sweep")
    assert parents[0].info.status == "FAILED" and parents[0].data.tags["ganpipe.status"] == "failed"
    assert len(kids) == 1
    assert kids[0].info.status == "FAILED"
    assert kids[0].data.tags["ganpipe.status"] == "diverged"
    assert kids[0].data.tags["ganpipe.reason"].startswith("diverged at step")
    assert optuna_states(tmp_path) == Counter(FAIL=1)


def test_dry_run_starts_nothing(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "loss.gp_weight" in proc.stdout and "when loss.name = wgan-gp" in proc.stdout
    assert "resources per trial: cpu 1" in proc.stdout and "trial budget: 6 trials" in proc.stdout
    assert "scheduler: ASHA on each trial's best objective, grace 100 steps" in proc.stdout
    assert "best: mode_tv (min)" in proc.stdout  # ring8's default objective, resolved at load
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_unreachable_tracking_server_is_bad_input(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)), "--tracking-uri", "http://127.0.0.1:9")
    assert proc.returncode == 2
    assert "--tracking-uri: tracking.uri: tracking server http://127.0.0.1:9 is unreachable" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]
    # the same server named by the environment: the message blames the variable, not the sweep file
    proc = subprocess.run([sys.executable, "-m", "ganpipe.cli", "sweep", str(tmp_path / "sweep.yaml")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert "$MLFLOW_TRACKING_URI: tracking.uri: tracking server http://127.0.0.1:9 is unreachable" in proc.stderr


@pytest.mark.parametrize("option, value, expect", [
    ("--tracking-uri", "foo://bar", "--tracking-uri: tracking.uri: foo://bar: unsupported tracking URI; use http(s)://"),
    ("--tracking-uri", "postgresql://u:p@127.0.0.1:9/db",
     "--tracking-uri: tracking.uri: database server 127.0.0.1:9 of the tracking store is unreachable"),
    ("--storage", "results-file", "results-file is a file, not a folder"),
    ("--storage", "/proc/no-such-folder", "/proc/no-such-folder is not a folder Tune results can be written to"),
])
def test_unusable_tracking_store_or_storage_is_bad_input(tmp_path, option, value, expect):
    if value == "results-file":
        (tmp_path / value).write_text("a file where the results folder should go")
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)), option, value)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert expect in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    made_here = {"sweep.yaml", "results-file"} if value == "results-file" else {"sweep.yaml"}
    assert {p.name for p in tmp_path.iterdir()} == made_here  # no MLflow store, no results folder


def test_impossible_resources_are_refused_before_any_run(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path, resources={"cpu": 1, "gpu": 64})))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "resources: a trial asks for cpu 1, gpu 64 but the local Ray has 2 CPUs (--num-cpus) and" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr  # refused before Ray started
    assert {p.name for p in tmp_path.iterdir()} == {"sweep.yaml"}


def test_sigint_during_the_last_trials_then_resume_gives_exact_totals(tmp_path):
    # Ctrl-C once every sample has been created: Tune hands back the trials it stopped as TERMINATED, like
    # finished ones, so only the driver's own watch tells an interrupted sweep from a finished one
    path = write_sweep(
        tmp_path, train={"steps": 3000, "batch_size": 64},
        eval={"every": 1000, "num_samples": 500},
        search={"num_samples": 6, "seed": 2, "max_concurrent": 2, "scheduler": {"name": "none"}},
        promote={"enabled": True, "max_fid": 1e9, "min_diversity": 0.0},
    )
    # another sweep's folder whose name starts with this one's, and sorts after it: --resume must not take it
    decoy = tmp_path / "ray_results" / "t-sweep-long-20991231-235959"
    decoy.mkdir(parents=True)
    (decoy / "ganpipe-sweep.json").write_text("{}")

    def last_trial_running():
        kids = [r for r in sqlite_runs(tmp_path / "mlflow.db") if "mlflow.parentRunId" in r["tags"]]
        return len(kids) == 3 and any(k["status"] == "FINISHED" for k in kids) and any(
            k["status"] == "RUNNING" for k in kids)

    cmd = [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--set", "search.num_samples=3", "--num-cpus", "2"]
    code, out = interrupt_when(cmd, tmp_path, last_trial_running, timeout=240)
    assert code == 130, out[-3000:]
    assert "sweep interrupted" in out and "promotion" not in out
    _, parents, kids = runs(tmp_path, "t-sweep")
    assert parents[0].info.status == "KILLED"
    assert len(kids) == 3 and all(k.info.status != "RUNNING" for k in kids)
    assert "FAIL" not in optuna_states(tmp_path)  # the stopped trials stay open for --resume
    # the printed command continues it as started: the --set (3 trials, not the file's 6) is kept for it
    hint = next(line for line in out.splitlines() if line.startswith("resume: "))[len("resume: "):]
    assert "--set" not in hint and hint.startswith(f"ganpipe sweep {path} --resume")

    refused = ganpipe(tmp_path, "sweep", str(path), "--resume", "--set", "search.num_samples=4")
    assert refused.returncode == 2 and "--resume keeps the --set the sweep started with" in refused.stderr

    proc = ganpipe(tmp_path, "sweep", str(path), "--resume")  # as the hint says
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    c, parents, kids = runs(tmp_path, "t-sweep")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "ganpipe.reason" not in parents[0].data.tags  # "interrupted; resume with --resume" went
    assert len(kids) == 3 and len({k.data.tags["ganpipe.trial_id"] for k in kids}) == 3
    assert all(k.info.status == "FINISHED" for k in kids)
    for kid in kids:
        history = c.get_metric_history(kid.info.run_id, "fid")
        assert sorted(m.step for m in history) == [1000, 2000, 3000]  # each evaluation logged exactly once
        # the best checkpoint is the best of the whole trial under its objective (ring8: mode_tv), before and
        # after the interruption, the earliest of equals
        objective = c.get_metric_history(kid.info.run_id, "objective")
        best = min(objective, key=lambda m: (m.value, m.step))
        kept = kid.data.tags
        assert float(kept["ganpipe.best.step"]) == best.step
        assert float(kept["ganpipe.best.objective"]) == pytest.approx(best.value)
        assert kid.data.tags["ganpipe.status"] == "finished" and "ganpipe.reason" not in kid.data.tags
    assert optuna_states(tmp_path) == Counter(COMPLETE=3)
    assert "promotion:" in proc.stdout
    assert not list(decoy.iterdir())[1:]  # the decoy gained nothing


def test_killed_trial_process_is_retried_from_its_checkpoint(tmp_path):
    path = write_sweep(
        tmp_path, train={"steps": 3000, "batch_size": 64}, eval={"every": 500, "num_samples": 500},
        search={"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}},
        failure={"max_failures": 2},
    )
    cmd = [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--num-cpus", "2"]
    scratch = tmp_path / "tmp"  # the trials' temp folder, apart from everything else's; Ray's own stays where it was
    scratch.mkdir()
    left_before = orphan_scratch(scratch)  # as a trial process killed mid-evaluation by an earlier sweep leaves it
    env = {**os.environ, "TMPDIR": str(scratch), "RAY_TMPDIR": os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()}
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    killed = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not killed:
            time.sleep(1)
            try:
                kids = [r for r in sqlite_runs(tmp_path / "mlflow.db") if "mlflow.parentRunId" in r["tags"]]
            except Exception:
                continue
            # two evaluations logged: the first one's checkpoint has surely reached the storage
            if kids and len(kids[0]["fid_steps"]) >= 2:
                for pid in descendants(driver.pid):
                    if "ImplicitFunc" in cmdline(pid):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert killed, "no trial process found to kill"
    assert driver.returncode == 0, out[-3000:]
    c, _, kids = runs(tmp_path, "t-sweep")
    assert len(kids) == 1 and kids[0].info.status == "FINISHED"
    steps = [m.step for m in c.get_metric_history(kids[0].info.run_id, "fid")]
    assert sorted(steps) == [500, 1000, 1500, 2000, 2500, 3000]
    restarts = c.get_metric_history(kids[0].info.run_id, "restarted_at_step")
    assert len(restarts) == 1 and restarts[0].value >= 500  # resumed from a checkpoint, not from step 0
    assert optuna_states(tmp_path) == Counter(COMPLETE=1)
    # the earlier process's folder, and this kill's if it came mid-evaluation, are removed (ganpipe.scratch)
    assert not left_before.exists() and not list(scratch.glob("ganpipe-ckpt-*"))


def test_two_objectives_give_a_pareto_front(tmp_path):
    # ASHA on each trial's last objective: Tune refuses results that lack the scheduler's metric
    path = write_sweep(
        tmp_path, train={"steps": 100, "batch_size": 32}, eval={"every": 50, "num_samples": 500},
        search={"num_samples": 3, "max_concurrent": 2, "objectives": ["fid", "diversity"], "sampler": "random",
                "scheduler": {"name": "asha", "compare": "last", "grace_period": 50}},
    )
    proc = ganpipe(tmp_path, "sweep", str(path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    c, parents, kids = runs(tmp_path, "t-sweep")
    assert len(kids) == 3
    artifacts = {a.path for a in c.list_artifacts(parents[0].info.run_id)}
    assert "optuna_pareto_front.png" in artifacts
    (db,) = (tmp_path / "ray_results").glob("*/optuna.db")
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(len(t.values) == 2 for t in study.trials)
    # each trial's two values are those of its best evaluation under the lexicographic rule
    best = {(float(k.data.tags["ganpipe.best.fid"]), float(k.data.tags["ganpipe.best.diversity"])) for k in kids}
    assert {tuple(t.values) for t in study.trials} == best


def test_unreachable_cluster_is_bad_input_and_touches_nothing(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)), "--address", "127.0.0.1:1", "--dry-run")
    assert proc.returncode == 0  # a dry run never connects
    proc = subprocess.run([sys.executable, "-m", "ganpipe.cli", "sweep", str(tmp_path / "sweep.yaml"),
                           "--address", "127.0.0.1:1"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--address: address: nothing answers at 127.0.0.1:1" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_a_trial_alone_takes_the_idle_cpu_as_a_second_thread(tmp_path):
    # one trial on 2 CPUs: nothing is left to start, so after its first evaluation it trains on 2 threads
    search = {"num_samples": 1, "sampler": "random", "scheduler": {"name": "none"}}
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path, search=search, loss="hinge")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    c, _, (kid,) = runs(tmp_path, "t-sweep")
    threads = [int(m.value) for m in sorted(c.get_metric_history(kid.info.run_id, "threads"), key=lambda m: m.step)]
    assert threads == [1, 2, 2], threads  # evaluations at steps 100, 200, 300: what each interval trained on


def test_checkpoints_are_scored_only_when_some_are_dropped():
    """Keeping every checkpoint (the default) gives Tune no score: scoring made it re-score every kept
    checkpoint on each new one. Keeping the best k ranks them by the sweep's objective."""
    from ganpipe.objective import OBJECTIVE
    from ganpipe.tune.search import checkpoint_config

    every = checkpoint_config(0)
    assert every.num_to_keep is None and every.checkpoint_score_attribute is None
    best = checkpoint_config(3)
    assert (best.num_to_keep, best.checkpoint_score_attribute, best.checkpoint_score_order) == (3, OBJECTIVE, "min")


def test_short_start_up_trials_stop_at_their_steps_and_teach_the_model_there(tmp_path):
    """search.startup_steps: the sampler's random start-up trials (the first startup_trials) train only that
    long, though ASHA alone would let the first trials at each rung run on; the others run to ASHA's rungs."""
    sweep = write_sweep(tmp_path, train={"steps": 400, "batch_size": 64},
                        search={**SWEEP["search"], "num_samples": 4, "startup_trials": 2, "startup_steps": 100,
                                "scheduler": {"name": "asha", "grace_period": 200, "reduction_factor": 2}})
    proc = ganpipe(tmp_path, "sweep", str(sweep))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last_step = {}
    for result in (tmp_path / "ray_results").glob("*/train_trial_*/result.json"):
        number = int(result.parent.name.split("_")[3])  # train_trial_<id>_<number>_<values>
        last_step[number] = max(json.loads(line)["step"] for line in result.read_text().splitlines())
    assert sorted(last_step) == [1, 2, 3, 4]
    assert last_step[1] == last_step[2] == 100  # the start-up, stopped at its steps
    assert last_step[3] >= 200 and last_step[4] >= 200  # ASHA cannot stop a trial before its grace period
    assert "stopped by ASHA or the short start-up at step 100 of 400" in proc.stdout
    (db,) = (tmp_path / "ray_results").glob("*/optuna.db")
    study = optuna.load_study(study_name=db.parent.name, storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # the model learnt the start-up's best
