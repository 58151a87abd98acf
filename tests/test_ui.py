"""`ganpipe ui` serves the MLflow UI on loopback for the sweep's store, and stops cleanly."""
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from services import free_port


@pytest.mark.integration
@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(tmp_path):
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
        os.killpg(proc.pid, signal.SIGTERM)  # the UI runs its server in child processes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
