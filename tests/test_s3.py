"""`--storage s3://bucket/prefix`: Tune results, checkpoints and the study snapshot in a real S3-compatible
server (moto's server on 127.0.0.1, found by pyarrow through AWS_ENDPOINT_URL), MLflow in a local sqlite file.

Each sweep runs as its own `ganpipe` process with the AWS settings in its environment, as a user runs it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import sqlite_runs
from services import KEYS, keys, moto_server, s3, study_states

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = {
    "name": "t-s3",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32},
    "loss": {"name": {"choice": ["hinge", "ns"]}},
    "optimizer": {"lr_g": {"loguniform": [5e-4, 2e-3]}, "lr_d": 1e-3},
    "train": {"steps": 300, "batch_size": 64},
    "eval": {"every": 100, "num_samples": 500},
    "search": {"num_samples": 3, "max_concurrent": 2, "sampler": "random", "seed": 3,
               "scheduler": {"name": "none"}},
    "resources": {"cpu": 1},
}
@pytest.fixture(scope="module")
def s3_url():
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(s3_url, request):
    """A fresh bucket per test."""
    name = "ganpipe-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    s3(s3_url).create_bucket(Bucket=name)
    return name


def aws_env(url: str, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **KEYS, "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true",
            "GANPIPE_HOME": str(home), **extra}


def write_sweep(folder: Path, **changes) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


def sweep_cmd(path: Path, storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--storage", storage, "--num-cpus", "2", *extra]


def runs(folder: Path):
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = c.get_experiment_by_name("t-s3")
    all_runs = c.search_runs([exp.experiment_id], max_results=1000)
    return (c, [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in all_runs if "mlflow.parentRunId" in r.data.tags])


def test_sweep_with_s3_storage(tmp_path, s3_url, bucket):
    started = time.time()
    proc = subprocess.run(sweep_cmd(write_sweep(tmp_path), f"s3://{bucket}/sweeps"), cwd=tmp_path,
                          env=aws_env(s3_url, tmp_path / "home"), capture_output=True, text=True, timeout=400)
    print(f"s3 sweep (3 trials x 300 steps): {time.time() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert not (tmp_path / "ray_results").exists()  # nothing went to the default local folder

    objects = keys(s3_url, bucket, "sweeps/")
    (state_key,) = [k for k in objects if k.endswith("/ganpipe-sweep.json")]
    exp = state_key.rsplit("/", 1)[0]
    assert exp.startswith("sweeps/t-s3-")
    assert f"{exp}/tuner.pkl" in objects and f"{exp}/optuna.db" in objects
    checkpoints = [k for k in objects if k.endswith("/checkpoint.pt")]
    trial_dirs = {k.split("/")[2] for k in checkpoints}
    assert len(trial_dirs) == 3 and len(checkpoints) == 9  # every evaluation's checkpoint, every trial
    assert len([k for k in objects if k.endswith("/progress.csv")]) == 3
    assert not any("/.ganpipe-" in k for k in objects)  # the storage check cleaned up after itself

    c, parents, kids = runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert json.loads(s3(s3_url).get_object(Bucket=bucket, Key=state_key)["Body"].read())["parent_run_id"] \
        == parents[0].info.run_id
    assert parents[0].data.tags["ganpipe.experiment_dir"] == f"s3://{bucket}/{exp}"
    assert len(kids) == 3
    for kid in kids:
        assert kid.info.status == "FINISHED", kid.data.tags
        assert sorted(m.step for m in c.get_metric_history(kid.info.run_id, "fid")) == [100, 200, 300]
        assert "ganpipe.best.fid" in kid.data.tags  # the best checkpoint was read back from S3 and attached
        assert [a.path for a in c.list_artifacts(kid.info.run_id, "best_checkpoint")] == \
            ["best_checkpoint/checkpoint.pt"]
    artifacts = {a.path for a in c.list_artifacts(parents[0].info.run_id)}
    assert {"results.md", "results.csv", "optuna_history.png"} <= artifacts
    assert study_states(s3_url, bucket, f"{exp}/optuna.db") == Counter(COMPLETE=3)
    # the driver's working copy of the study is on its own disk, not in S3
    (local,) = (tmp_path / "home" / "studies").glob("t-s3-*/optuna.db")
    assert local.stat().st_size > 0


def test_interrupted_s3_sweep_resumes_on_another_machine(tmp_path, s3_url, bucket):
    """SIGINT, then --resume with an empty GANPIPE_HOME: the study comes back from the bucket's snapshot."""
    path = write_sweep(tmp_path, train={"steps": 1000, "batch_size": 64}, eval={"every": 500, "num_samples": 500},
                       search={**SWEEP["search"], "num_samples": 4, "max_concurrent": 1})
    storage = f"s3://{bucket}/r"

    def two_finished():
        kids = [r for r in sqlite_runs(tmp_path / "mlflow.db") if "mlflow.parentRunId" in r["tags"]]
        return sum(k["status"] == "FINISHED" for k in kids) >= 2

    env = aws_env(s3_url, tmp_path / "home-a")
    started = time.time()
    proc = subprocess.Popen(sweep_cmd(path, storage), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(1)
            try:
                if two_finished():
                    break
            except Exception:
                continue
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-4000:]
    assert f"--storage {storage}" in out  # the resume hint names the S3 prefix
    _, parents, kids = runs(tmp_path)
    assert parents[0].info.status == "KILLED" and 2 <= len(kids) < 4

    resumed = subprocess.run(sweep_cmd(path, storage, "--resume"), cwd=tmp_path,
                             env=aws_env(s3_url, tmp_path / "home-b"), capture_output=True, text=True, timeout=400)
    print(f"s3 sweep interrupted + resumed (4 trials x 1000 steps): {time.time() - started:.1f} s")
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    c, parents, kids = runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(kids) == 4 and len({k.data.tags["ganpipe.trial_id"] for k in kids}) == 4
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert sorted(m.step for m in c.get_metric_history(kid.info.run_id, "fid")) == [500, 1000]
        assert "ganpipe.best.fid" in kid.data.tags
    (snapshot,) = [k for k in keys(s3_url, bucket, "r/") if k.endswith("/optuna.db")]
    assert study_states(s3_url, bucket, snapshot) == Counter(COMPLETE=4)


def test_the_newer_study_wins_between_this_disk_and_the_bucket(tmp_path, s3_url, bucket, monkeypatch):
    """A driver that resumes on a machine with an old copy of the study (the sweep went on from another
    machine since) takes the bucket's newer snapshot; its own newer copy is kept."""
    from ganpipe.tune.storage import Location, fetch_study, study_path

    for k, v in aws_env(s3_url, tmp_path / "home").items():
        monkeypatch.setenv(k, v)
    exp = Location(f"s3://{bucket}/r/exp")
    local = study_path(exp)
    local.parent.mkdir(parents=True)
    local.write_text("old copy on this disk")
    os.utime(local, (time.time() - 3600, time.time() - 3600))
    snapshot = tmp_path / "snapshot"
    snapshot.write_text("newer copy from the other machine")
    (exp / "optuna.db").upload(snapshot)
    assert fetch_study(exp).read_text() == "newer copy from the other machine"
    local.write_text("this disk went on after the upload")
    os.utime(local, (time.time() + 3600, time.time() + 3600))
    assert fetch_study(exp).read_text() == "this disk went on after the upload"


@pytest.mark.parametrize("case", ["missing-bucket", "unreachable-endpoint", "unsupported-scheme"])
def test_unusable_storage_is_bad_input_before_anything_starts(tmp_path, s3_url, case):
    storage, url, expect = {
        "missing-bucket": ("s3://no-such-bucket/x", s3_url, "bucket 'no-such-bucket' does not exist at endpoint"),
        "unreachable-endpoint": ("s3://some-bucket/x", "http://127.0.0.1:9", "cannot reach endpoint http://127.0.0.1:9"),
        "unsupported-scheme": ("gs://some-bucket/x", s3_url, "gs:// is not supported"),
    }[case]
    assert_refused(tmp_path, storage, aws_env(url, tmp_path / "home"), expect)


def test_refused_credentials_are_bad_input(tmp_path):
    # a second server with authentication on: it knows no access key, so every request is refused
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as url:
        assert_refused(tmp_path, "s3://some-bucket/x", aws_env(url, tmp_path / "home"),
                       "access denied (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")


def assert_refused(folder: Path, storage: str, env: dict, expect: str) -> None:
    proc = subprocess.run(sweep_cmd(write_sweep(folder), storage), cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"--storage: storage: {storage}" in proc.stderr or "--storage: storage: gs://" in proc.stderr, proc.stderr
    assert expect in proc.stderr, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["s.yaml"]  # no MLflow store, no results, no study
