from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core machines: tiny CPU networks are fastest (and reproducible) on one thread
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri in a test also sets $MLFLOW_TRACKING_URI, which every later test's
    subprocesses (sweeps) would inherit and log to; each test gets the environment back as it was."""
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", ""))
    if not os.environ["MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
    yield


@pytest.fixture(autouse=True)
def _no_mlflow_artifacts_where_pytest_runs():
    """An experiment made in a sqlite store keeps its artifacts under ./mlruns of the process that made it
    (MLflow's default artifact root). A test that logs artifacts in-process would leave them where pytest runs
    (the checkout): it makes its experiment with `experiment_in(tmp_path, ...)` or works from tmp_path."""
    leak = Path.cwd() / "mlruns"
    before = leak.exists()
    yield
    if not before and leak.exists():
        pytest.fail(f"{leak} appeared during this test (or one running beside it on another xdist worker): "
                    "make the experiment with conftest.experiment_in(tmp_path, ...) or work from tmp_path "
                    "(monkeypatch.chdir)", pytrace=False)


def interrupt_when(cmd: list[str], cwd, ready, timeout: float = 300, sig: str = "SIGINT") -> tuple[int, str]:
    """Run `cmd`, send `sig` once `ready()` is true (exceptions count as not yet), return (code, output)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(2)
            try:
                if ready():
                    break
            except Exception:
                continue
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def orphan_scratch(tmpdir: Path, kind: str = "ckpt") -> Path:
    """A scratch folder (`kind`: ckpt or png) under `tmpdir` whose process has ended without removing it: a real
    process makes it (ganpipe.scratch.new_folder) and exits at once, as a trial process killed mid-evaluation."""
    import os
    import subprocess
    import sys

    dies = f"import os; from ganpipe import scratch; print(scratch.new_folder({kind!r}), flush=True); os._exit(0)"
    made = subprocess.run([sys.executable, "-c", dies], env={**os.environ, "TMPDIR": str(tmpdir)},
                          capture_output=True, text=True, check=True).stdout.strip()
    assert Path(made).is_dir() and Path(made).parent == Path(tmpdir)
    return Path(made)


def descendants(pid: int) -> list[int]:
    """PIDs of every process below `pid`, read from /proc (no psutil needed)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def sqlite_runs(db: Path) -> list[dict]:
    """Runs of an MLflow sqlite store read directly, read-only: polling a store that a driver is still
    creating through MLflow itself would race its schema migration ("table _alembic_tmp_... exists")."""
    import sqlite3

    if not Path(db).exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        runs = {uuid: {"run_id": uuid, "status": status, "tags": {}, "fid_steps": []}
                for uuid, status in con.execute("SELECT run_uuid, status FROM runs")}
        for key, value, uuid in con.execute("SELECT key, value, run_uuid FROM tags"):
            if uuid in runs:
                runs[uuid]["tags"][key] = value
        for uuid, step in con.execute("SELECT run_uuid, step FROM metrics WHERE key = 'fid'"):
            if uuid in runs:
                runs[uuid]["fid_steps"].append(step)
    finally:
        con.close()
    return list(runs.values())


def experiment_in(folder: Path, c, name: str) -> str:
    """A new experiment `name` whose artifacts go under folder/mlruns, where a sweep run from `folder` puts
    them (not under ./mlruns of the test process, which is the checkout); its id."""
    from ganpipe import tracking

    c.create_experiment(name, artifact_location=(Path(folder) / "mlruns").as_uri())
    return tracking.ensure_experiment(c, name)


def register_export(tmp_path: Path, trainer, model_name: str):
    """Register what `trainer.export()` gives as version 1 of `model_name` in a fresh sqlite store
    under tmp_path, as a promotion would; returns (tracking uri, model version)."""
    from ganpipe import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    run_id = tracking.start_parent_run(c, experiment_in(tmp_path, c, model_name), "r", {})
    model, example, meta = trainer.export()
    return uri, tracking.register_generator(uri, run_id, model_name, model, example, meta, {})
