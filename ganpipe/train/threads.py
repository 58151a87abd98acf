"""One knob for a trial's CPU threads: torch's intra-op pool and numpy's BLAS together.

`torch.set_num_threads` leaves numpy's OpenBLAS alone. Inside Ray that happens to be right at the
start (Ray starts a worker with OMP_NUM_THREADS = its CPUs, which OpenBLAS reads at import), but not
in `ganpipe trial`, where BLAS keeps a thread per core, nor once idle CPUs are shared and torch's
threads change in a running worker. The evaluation's float64 statistics (FID's covariances and
eigen-solvers) run in BLAS, and a multi-threaded BLAS call on cores that are busy elsewhere waits for
them: with both cores training, FID's statistics for one Stacked-digits evaluation took 0.7 s with 2
BLAS threads and 0.03 s with 1; idle, it makes no difference (docs/benchmarks.md, section 2). So BLAS
gets the same threads as torch.
"""
from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def set_threads(n: int) -> None:
    """Torch and every BLAS loaded in this process compute on `n` threads from now on."""
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")  # called, not entered: the limit stays until changed again
