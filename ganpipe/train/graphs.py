"""A whole training step (n_disc D steps, the G step, the EMA update) replayed as one CUDA graph.

The shipped sweeps' networks are small (2-D points, 8 x 8 images, batches of 64). On an H200 their
steps were bound by the host launching 300-800 tiny kernels one by one, so a GPU trained them slower
than 2 CPU threads (docs/benchmarks.md, section 6). A replayed graph launches them all at once.

What stays as without a graph: every random input of a step (real batch, z, labels, the GP's
interpolation weights) is drawn on the CPU with the trainer's generator, in the same order
(`Trainer._feed`), so checkpoints and resumption are unchanged. The last warm-up step records the draws
and gives each a fixed device buffer, which the captured step reads; before each replay the draws are
made again and copied into those buffers.

CUDA's rules, followed as in PyTorch's whole-network capture recipe: a few eager steps on a side stream
first (they build the optimizers' state and the autograd buffers), optimizers in capturable mode (their
step counts live on the GPU), and nothing in the step may read a value back to the host (ganpipe's
EMA update does not). Every call is one real training step: the warm-up calls train eagerly, and the
call that captures (capture runs nothing) then replays. A step that cannot be captured trains eagerly,
with a note saying why.
"""
from __future__ import annotations

from typing import Callable

import torch

WARMUP_STEPS = 3


def set_capturable(opt: torch.optim.Optimizer, on: bool) -> None:
    """Switch an optimizer (Adam, RMSprop) in or out of capturable mode, moving its step counts to where
    that mode keeps them (on the parameter's device, or on the CPU)."""
    for group in opt.param_groups:
        if "capturable" in group:
            group["capturable"] = on
    for param, state in opt.state.items():
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            state["step"] = step.to(param.device if on else "cpu", torch.float32)


class GraphedStep:
    """Callable like `Trainer._train_step`: (last D loss, G loss), the graph's own output tensors, which
    the next call overwrites."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None  # why capture failed; then every step is eager
        self.warmup_left = WARMUP_STEPS
        self.inputs: list[tuple[Callable, tuple[torch.Tensor, ...]]] = []  # (draw, its device buffers)
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._recording, self._handed_out = False, 0
        for opt in (trainer.opt_g, trainer.opt_d):
            set_capturable(opt, True)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.failed:
            return self.trainer._train_step()
        if self.graph is None:
            if self.warmup_left > 0:
                self.warmup_left -= 1
                return self._on_side_stream(record_inputs=self.warmup_left == 0)
            if not self._capture():
                return self.trainer._train_step()
        for draw, buffers in self.inputs:
            drawn = draw()
            for buffer, x in zip(buffers, drawn if isinstance(drawn, tuple) else (drawn,)):
                buffer.copy_(x.pin_memory(), non_blocking=True)  # pinned: the copy does not wait for the GPU
        self.graph.replay()
        return self.outputs

    def feed(self, draw: Callable, drawn):
        """Trainer._feed while this step records or captures. The last warm-up step records each draw and
        allocates its device buffers (outside the graph, as static inputs must be); capture then hands
        them out in the same order."""
        tensors = drawn if isinstance(drawn, tuple) else (drawn,)
        if self._recording:
            buffers = tuple(torch.empty_like(x, device=self.trainer.device) for x in tensors)
            self.inputs.append((draw, buffers))
            out = tuple(x.to(self.trainer.device) for x in tensors)
        else:
            _, buffers = self.inputs[self._handed_out]
            self._handed_out += 1
            out = buffers
        return out if isinstance(drawn, tuple) else out[0]

    def _on_side_stream(self, record_inputs: bool) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.trainer.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        if record_inputs:
            self.trainer._graphing, self._recording = self, True
        try:
            with torch.cuda.stream(side):
                out = self.trainer._train_step()
        finally:
            self.trainer._graphing, self._recording = None, False
        torch.cuda.current_stream(device).wait_stream(side)
        return out

    def _capture(self) -> bool:
        t = self.trainer
        rng = t.rng.get_state()  # capture's draws are thrown away; the replay draws them again
        for opt in (t.opt_g, t.opt_d):
            opt.zero_grad(set_to_none=True)  # gradients then live in the graph's memory
        graph = torch.cuda.CUDAGraph()
        t._graphing, self._handed_out = self, 0
        try:
            with torch.cuda.graph(graph):
                self.outputs = t._train_step()
            if self._handed_out != len(self.inputs):
                raise RuntimeError(f"the step drew {self._handed_out} inputs, its warm-up {len(self.inputs)}")
        except Exception as err:  # noqa: BLE001 (any op that cannot be captured: train eagerly instead)
            self.failed = f"{type(err).__name__}: {err}".splitlines()[0]
            print(f"note: this step cannot be replayed as a CUDA graph ({self.failed}); training without",
                  flush=True)
            self.inputs, self.outputs = [], None
            for opt in (t.opt_g, t.opt_d):
                opt.zero_grad(set_to_none=True)
                set_capturable(opt, False)
            return False
        finally:
            t._graphing = None
            t.rng.set_state(rng)
        self.graph = graph
        return True
