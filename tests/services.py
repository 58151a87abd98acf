"""Real services for the tests, each on a free loopback port and torn down with everything it started:
a Ray head started with the `ray` CLI, moto's S3-compatible server, an MLflow tracking server."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import optuna

from conftest import cmdline, descendants

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def kill_tree(pid: int, marker: str) -> None:
    """SIGKILL `pid`, everything below it, and any process whose command line names `marker` (our temp folder):
    raylets ignore SIGTERM, and some Ray processes outlive their parent."""
    victims = {pid, *descendants(pid)}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and marker in cmdline(int(entry.name)):
            victims.add(int(entry.name))
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def ray_head(client_port: int | None = None, **node_env):
    """`ray start --head --block` in a private RAY_TMPDIR, with `node_env` set on the node; yields (address, tmpdir)."""
    tmp = Path(tempfile.mkdtemp(prefix="gp-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
           "--object-store-memory=100000000", "--include-dashboard=false", "--disable-usage-stats", "--block"]
    if client_port:
        cmd.append(f"--ray-client-server-port={client_port}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(cmd, env={**env, **node_env, "RAY_TMPDIR": str(tmp)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        record = tmp / "ray" / "ray_current_cluster"
        deadline = time.time() + 90
        while not (record.is_file() and record.read_text().strip() and listening(port)
                   and (client_port is None or listening(client_port))):
            assert proc.poll() is None, "ray start exited"
            assert time.time() < deadline, "the Ray head did not come up"
            time.sleep(0.5)
        yield record.read_text().strip(), tmp
    finally:
        kill_tree(proc.pid, str(tmp))
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def ray_log_tails(tmp: Path, pattern: str, chars: int = 3000) -> str:
    """The ends of the head's Ray logs matching `pattern`, for a failure message: they go with the head's folder."""
    logs = sorted(log for log in (tmp / "ray").glob(f"session_*/logs/{pattern}") if "session_latest" not in log.parts)
    return "".join(f"\n--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}" for log in logs)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    return {**env, **extra}



# ---- S3 (moto) ----------------------------------------------------------------------------
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_server(**env):
    """moto's S3-compatible server on a free loopback port, in its own process group."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, "moto server exited"
                assert time.time() < deadline, "moto server did not come up"
                time.sleep(0.3)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def s3(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in KEYS.items()
                                                   if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")


def keys(url: str, bucket: str, prefix: str = "") -> list[str]:
    found, token = [], None
    while True:
        page = s3(url).list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        found += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]


def study_states(url: str, bucket: str, key: str) -> Counter:
    """States of the Optuna study snapshot the driver uploaded to the bucket."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "optuna.db"
        s3(url).download_file(bucket, key, str(db))
        (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
        study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
        return Counter(t.state.name for t in study.trials)



# ---- MLflow tracking server -------------------------------------------------------------
def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to a process started with start_new_session=True and its children (the MLflow UI serves from
    child processes), SIGKILL if they outlive `timeout`."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def mlflow_server(folder: Path, port: int, backend: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganpipe.cli", "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(folder / "artifacts"), "--port", str(port)],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while not healthy(port):
            assert proc.poll() is None, "mlflow server exited"
            assert time.time() < deadline, "mlflow server did not come up"
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def sqlite_mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a sqlite store in a fresh folder, for a module's fixture
    (`yield from sqlite_mlflow_server(tmp_path_factory)`); yields its port."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    with mlflow_server(folder, port, f"sqlite:///{folder / 'server.db'}"):
        yield port
