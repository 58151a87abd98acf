"""Whether each training step's losses are finite, without making the host wait for a GPU every step.

On a CPU the answer is there at once. On a GPU, reading step N's losses right after launching it keeps
the host from preparing step N+1 while the GPU runs step N: 12-24 % of a CUDA-graphed step on an H200
(docs/benchmarks.md, section 6). So there step N's flag is copied to pinned memory asynchronously and
read once step N+1 has been launched. A diverged trial then stops one step later; its message still
names the step whose loss was not finite.
"""
from __future__ import annotations

import torch


class FinitenessCheck:
    def __init__(self, device: torch.device):
        self.lagged = device.type == "cuda"
        self.pending: tuple[int, int] | None = None  # (step, which slot holds its flag)
        if self.lagged:  # two slots: step N's copy lands in one while step N-1's is read from the other
            self.flags = [torch.ones((), dtype=torch.bool).pin_memory() for _ in range(2)]
            self.events = [torch.cuda.Event() for _ in range(2)]

    def check(self, step: int, loss: torch.Tensor) -> int | None:
        """Note step `step`'s loss; the number of a step seen so far whose loss was not finite, else None."""
        if not self.lagged:
            return None if bool(torch.isfinite(loss)) else step
        slot = 0 if self.pending is None else 1 - self.pending[1]
        self.flags[slot].copy_(torch.isfinite(loss), non_blocking=True)
        self.events[slot].record()
        bad = self.flush()
        self.pending = (step, slot)
        return bad

    def flush(self) -> int | None:
        """Wait for the step still pending (if any); its number if its loss was not finite."""
        if self.pending is None:
            return None
        step, slot = self.pending
        self.pending = None
        self.events[slot].synchronize()
        return None if bool(self.flags[slot]) else step
