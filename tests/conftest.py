import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core machines: tiny CPU networks are fastest (and reproducible) on one thread
    torch.set_num_threads(1)
    yield


def interrupt_when(cmd: list[str], cwd, ready, timeout: float = 300) -> tuple[int, str]:
    """Run `cmd`, send SIGINT once `ready()` is true (exceptions count as not yet), return (code, output)."""
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
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out
