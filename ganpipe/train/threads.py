"""One knob for a trial's CPU threads: torch's intra-op pool and numpy's BLAS together.

`torch.set_num_threads` leaves numpy's OpenBLAS with a thread per core. The evaluation's float64
statistics (FID's covariances and eigen-solvers) run there, and on a node whose cores are all
training, a multi-threaded BLAS call spins against the other trials: on 2 busy cores the FID of one
Stacked-digits evaluation took 0.7 s with 2 BLAS threads and 0.03 s with 1 (docs/benchmarks.md,
section 2). So a trial's BLAS gets the same threads as its torch.
"""
from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def set_threads(n: int) -> None:
    """Torch and every BLAS loaded in this process compute on `n` threads from now on."""
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")  # called, not entered: the limit stays until changed again
