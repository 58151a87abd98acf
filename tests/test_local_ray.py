"""Without --address a sweep runs its own in-process Ray, even when `ray start` left a cluster
running on the machine (plain ray.init() would join that one, and then refuse num_cpus)."""
from __future__ import annotations

import pytest
from test_address import clean_env, finished_children, ray_head, sweep


@pytest.mark.slow
@pytest.mark.integration
def test_local_sweep_ignores_a_cluster_that_ray_start_left_running(tmp_path):
    with ray_head() as (address, ray_tmp):
        proc = sweep(tmp_path, clean_env(RAY_TMPDIR=str(ray_tmp)), "--num-cpus", "2")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "joined the Ray cluster" not in proc.stdout
        sessions = list((ray_tmp / "ray").glob("session_2*"))
        assert len(sessions) == 2, sessions  # the head's, and the sweep's own
    finished_children(f"sqlite:///{tmp_path / 'mlflow.db'}")
