"""`ganpipe ui` serves the MLflow UI on loopback for the sweep's store, and stops cleanly."""
import subprocess
import sys
import time
import urllib.request

import pytest
from services import free_port, stop_group


@pytest.mark.integration
@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(tmp_path):
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("a-sweep")  # a store to show
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganpipe.cli", "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and status is None:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
            except OSError:
                assert proc.poll() is None, proc.stdout.read()[-2000:]
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"MLflow" in r.read()
    finally:
        stop_group(proc)  # the UI runs its server in child processes


def test_ui_bad_input_exits_2_before_serving(tmp_path):
    def refused(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "ganpipe.cli", "ui", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        return proc.stderr

    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert f"--tracking-uri: tracking.uri: the tracking store {missing} does not exist" in refused(
        "--tracking-uri", missing)
    assert not (tmp_path / "none.db").exists()
    assert "--port: port: must be in 1..65535, got 99999" in refused("--port", "99999")
    assert "bogus://x: unsupported tracking URI" in refused("--tracking-uri", "bogus://x")
    assert "MLFLOW_ALLOW_FILE_STORE" in refused("--tracking-uri", str(tmp_path))
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(store).create_experiment("a-sweep")
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert f"--port: port: cannot listen on 127.0.0.1:{port}" in refused("--tracking-uri", store, "--port", str(port))
