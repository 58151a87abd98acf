"""How a sweep's idle CPUs are shared (ganpipe.tune.threads.shares; the end-to-end check is in test_sweep),
and how a trial sets its threads (ganpipe.train.threads)."""
from types import SimpleNamespace

from ray.tune.experiment import Trial

from ganpipe.tune.threads import shares


def trials(*statuses: str):
    return [SimpleNamespace(trial_id=f"t{i}", status=s) for i, s in enumerate(statuses)]


def test_no_sharing_while_a_trial_waits_or_is_still_to_come():
    assert shares(trials(Trial.RUNNING, Trial.PENDING), num_samples=2, node_cpus=4, base=1) == {}
    assert shares(trials(Trial.RUNNING, Trial.PAUSED), num_samples=2, node_cpus=4, base=1) == {}
    assert shares(trials(Trial.RUNNING, Trial.TERMINATED), num_samples=3, node_cpus=4, base=1) == {}


def test_the_tail_takes_the_idle_cpus_evenly():
    done = [Trial.TERMINATED] * 5
    assert shares(trials(*done, Trial.RUNNING), num_samples=6, node_cpus=2, base=1) == {"t5": 2}
    # 3 running trials on 8 CPUs: 3 + 3 + 2; a trial whose share is its base is not listed
    assert shares(trials(Trial.RUNNING, Trial.RUNNING, Trial.RUNNING, Trial.ERROR), 4, 8, 1) == {
        "t0": 3, "t1": 3, "t2": 2}
    assert shares(trials(Trial.RUNNING, Trial.RUNNING), num_samples=2, node_cpus=2, base=1) == {}
    assert shares(trials(Trial.RUNNING, Trial.TERMINATED), num_samples=2, node_cpus=3, base=2) == {"t0": 3}


def test_nothing_running_shares_nothing():
    assert shares(trials(Trial.TERMINATED, Trial.ERROR), num_samples=2, node_cpus=2, base=1) == {}


def test_a_trial_sets_numpys_blas_threads_with_torchs():
    import torch
    from threadpoolctl import threadpool_info

    from ganpipe.train.threads import set_threads

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and blas_threads() == {1}
        set_threads(2)  # a shared idle CPU: both pools follow
        assert torch.get_num_threads() == 2 and blas_threads() == {2}
    finally:
        set_threads(before)
