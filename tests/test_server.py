"""A real `mlflow server` (via `ganpipe server`) on 127.0.0.1: restarts mid-sweep, and PostgreSQL as backend."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from services import free_port, healthy, mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = {
    "name": "t-server",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32},
    "loss": {"name": {"choice": ["hinge", "ns"]}},
    "optimizer": {"lr_g": 1e-3, "lr_d": 1e-3},
    "train": {"steps": 3000, "batch_size": 64},
    "eval": {"every": 500, "num_samples": 500},
    "search": {"num_samples": 2, "max_concurrent": 2, "sampler": "random", "scheduler": {"name": "none"}},
}


def child_runs(uri: str, experiment: str):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id])
    return c, [r for r in runs if "mlflow.parentRunId" in r.data.tags], [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_sweep_survives_a_tracking_server_restart(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    with mlflow_server(tmp_path, port, backend):
        driver = subprocess.Popen(
            [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--tracking-uri", uri, "--num-cpus", "2"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.time() + 180
        while time.time() < deadline:  # stop the server once metrics are flowing
            time.sleep(1)
            try:
                c, kids, _ = child_runs(uri, "t-server")
                if kids and any(c.get_metric_history(k.info.run_id, "fid") for k in kids):
                    break
            except Exception:
                pass
    # the server is down now (killed with its process group)
    assert not healthy(port)
    time.sleep(8)
    try:
        with mlflow_server(tmp_path, port, backend):
            up = time.time()

            def logged() -> int:
                c, kids, _ = child_runs(uri, "t-server")
                return sum(len(c.get_metric_history(k.info.run_id, "fid")) for k in kids)

            before, flowing = logged(), None
            while flowing is None and driver.poll() is None and time.time() < up + 300:
                if logged() > before:
                    flowing = time.time() - up
                time.sleep(0.25)
            if flowing is not None:
                print(f"server back up -> first new trial metrics arrive: {flowing:.1f} s")
            out, _ = driver.communicate(timeout=400)
            assert driver.returncode == 0, out[-4000:]
            c, kids, parents = child_runs(uri, "t-server")
            assert len(parents) == 1 and parents[0].info.status == "FINISHED"
            assert len(kids) == 2
            for kid in kids:
                steps = [m.step for m in c.get_metric_history(kid.info.run_id, "fid")]
                assert sorted(steps) == [500, 1000, 1500, 2000, 2500, 3000], steps  # none lost, none twice
                assert kid.info.status == "FINISHED"
    finally:
        if driver.poll() is None:
            driver.kill()


# ---- PostgreSQL backend ------------------------------------------------------------------------
def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries are missing: apt-get install postgresql (.ci/run does)"
    return Path(found[-1]).parent


@pytest.fixture
def postgres(tmp_path):
    """A private PostgreSQL server on 127.0.0.1 for this test (as user postgres when run as root)."""
    bindir, port = _pg_bin(), free_port()
    # pytest's tmp_path is private to root; PostgreSQL refuses to run as root, so it gets its own folder
    root = Path(tempfile.mkdtemp(prefix="ganpipe-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"),
                            "-o", f"-p {port} -k {sock} -h 127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run(as_pg + [str(bindir.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                                "-U", "postgres", "mlflow"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_sweep_on_a_server_with_a_postgresql_backend(tmp_path, postgres):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    sweep = {**SWEEP, "train": {"steps": 200, "batch_size": 32}, "eval": {"every": 100, "num_samples": 500}}
    work = tmp_path / "work"
    work.mkdir()
    path = work / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with mlflow_server(work, port, postgres):
        proc = subprocess.run(
            [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--tracking-uri", uri, "--num-cpus", "2"],
            cwd=work, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        c, kids, parents = child_runs(uri, "t-server")
        assert len(parents) == 1 and len(kids) == 2
        for kid in kids:
            assert sorted(m.step for m in c.get_metric_history(kid.info.run_id, "fid")) == [100, 200]
            assert [a.path for a in c.list_artifacts(kid.info.run_id, "samples")]  # PNGs through the proxy
    assert not (work / "mlflow.db").exists()  # nothing went to a local store by mistake
