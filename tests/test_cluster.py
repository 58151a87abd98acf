"""Multi-node sweeps on one machine: a Ray head plus two worker nodes (ray.cluster_utils.Cluster).

The cluster lives in the test process (which never connects to it); `ganpipe sweep
--address` joins it from a subprocess, as a user's driver would. Faults are real:
a worker node's raylet and the driver are killed with SIGKILL by PID.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import descendants, sqlite_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = {
    "name": "t-cluster",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32},
    "loss": {"name": {"choice": ["hinge", "ns"]}},
    "optimizer": {"lr_g": {"loguniform": [5e-4, 2e-3]}, "lr_d": 1e-3},
    "train": {"steps": 4000, "batch_size": 64},
    "eval": {"every": 500, "num_samples": 500},
    "search": {"num_samples": 4, "max_concurrent": 3, "sampler": "random", "scheduler": {"name": "none"}},
    "failure": {"max_failures": 3},
}
MB = 1024 * 1024


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, object_store_memory=80 * MB) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    c.shutdown()


def write_sweep(folder: Path, **changes) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


def sweep_cmd(path: Path, address: str, storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--address", address,
            "--storage", str(storage), *extra]


def kids(folder: Path):
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = c.get_experiment_by_name("t-cluster")
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    return c, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def optuna_states(storage: Path) -> Counter:
    """States of the study's trials; trials a killed driver asked but never ran count as "STALE"."""
    (db,) = storage.glob("*/optuna.db")
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    return Counter("STALE" if t.state.name == "FAIL" and "ganpipe_stale" in t.user_attrs else t.state.name
                   for t in study.trials)


def assert_exact_totals(folder: Path, storage: Path, n: int, steps: list[int]):
    c, children = kids(folder)
    assert len(children) == n and len({k.data.tags["ganpipe.trial_id"] for k in children}) == n
    for kid in children:
        assert kid.info.status == "FINISHED", (kid.data.tags.get("ganpipe.reason"), kid.data.tags)
        got = [m.step for m in c.get_metric_history(kid.info.run_id, "fid")]
        assert sorted(got) == steps, got
    states = optuna_states(storage)
    assert states["COMPLETE"] == n and set(states) <= {"COMPLETE", "STALE"}, states
    return c, children


def test_multi_node_sweep_needs_shared_storage(tmp_path, cluster):
    c, _ = cluster
    proc = subprocess.run([sys.executable, "-m", "ganpipe.cli", "sweep", str(write_sweep(tmp_path)),
                           "--address", c.address], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--storage: storage: required on a cluster of 3 nodes" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_trials_spread_over_nodes_and_survive_a_killed_worker(tmp_path, cluster):
    c, workers = cluster
    storage = tmp_path / "shared"
    proc = subprocess.Popen(sweep_cmd(write_sweep(tmp_path), c.address, storage), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim, killed_at = None, None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and victim is None:  # a worker node whose trial has a checkpoint
            time.sleep(1)
            try:
                children = [r for r in sqlite_runs(tmp_path / "mlflow.db") if "mlflow.parentRunId" in r["tags"]]
            except Exception:
                continue
            for kid in children:
                node_id = kid["tags"].get("ganpipe.ray_node_id")
                node = next((w for w in workers if w.node_id == node_id), None)
                # two evaluations logged: the first one's checkpoint has surely reached the storage
                if node is not None and len(kid["fid_steps"]) >= 2:
                    victim = node
                    break
        assert victim is not None, "no trial reached a checkpoint on a worker node"
        raylet = victim.all_processes["raylet"][0].process
        for pid in [raylet.pid, *descendants(raylet.pid)]:  # the node and every process on it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed_at = time.time()
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    mlc, children = assert_exact_totals(tmp_path, storage, 4, [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000])
    nodes = {k.data.tags["ganpipe.ray_node_id"] for k in children}
    restarted = [k for k in children if mlc.get_metric_history(k.info.run_id, "restarted_at_step")]
    assert restarted, "the trial of the killed node did not restart from its checkpoint\n" + out[-6000:]
    assert victim.node_id not in {k.data.tags["ganpipe.ray_node_id"] for k in restarted}  # moved elsewhere
    # trials ran on more than one node (the restarted one now names its new node)
    assert len(nodes | {victim.node_id}) >= 2
    restart = mlc.get_metric_history(restarted[0].info.run_id, "restarted_at_step")[0]
    latency = restart.timestamp / 1000 - killed_at
    print(f"node loss to trial restart (restart marker logged): {latency:.1f} s")
    assert 0 < latency < 120


def test_driver_sigkill_then_resume_completes_the_sweep(tmp_path, cluster):
    c, _ = cluster
    storage = tmp_path / "shared"
    path = write_sweep(tmp_path, search={**SWEEP["search"], "num_samples": 5, "max_concurrent": 2})
    proc = subprocess.Popen(sweep_cmd(path, c.address, storage), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(1)
            try:
                children = [r for r in sqlite_runs(tmp_path / "mlflow.db") if "mlflow.parentRunId" in r["tags"]]
                if sum(k["status"] == "FINISHED" for k in children) >= 2:
                    break
            except Exception:
                continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(3)  # let Ray notice the dead driver and clean up its trial actors
    resumed = subprocess.run(sweep_cmd(path, c.address, storage, "--resume"), cwd=tmp_path, capture_output=True,
                             text=True, timeout=500)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    assert_exact_totals(tmp_path, storage, 5, [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000])
