"""Where a GPU training step's time goes, for the small networks of the shipped sweeps.

On an H200, stability.yaml's MLP corner trained at 94 steps/s on the GPU against 450 on 2 CPU
threads (benchmarks/gpu_check.py): the step is bound by the host. This splits it, side by side on
one trainer per case, medians of `--repeats` runs of `--steps` steps:

  as_is        Trainer's own D and G steps, with the loop's per-step finiteness check
  no_check     without the finiteness check (one device-to-host sync per step)
  device_data  also without host-to-device copies: z and real batches drawn beforehand on the GPU
  no_ema       device_data without the EMA update
plus a torch.profiler count of CUDA runtime calls per step (launches, copies, synchronisations).

    python benchmarks/gpu_step.py --out gpu-step.json

`--device cpu` is a smoke run only (CI, tiny): the same splits on the CPU, no CUDA calls to count.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_cost import STABILITY_MLP_CORNER  # noqa: E402 (this script's folder)
from ganpipe.train import make_trainer  # noqa: E402
from ganpipe.trial import prepare_trial  # noqa: E402

CASES = {
    "stability MLP corner": STABILITY_MLP_CORNER,
    "stability first values": [],
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def steps_per_sec(trainer, steps: int, check: bool) -> float:
    device = trainer.device.type
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(trainer.cfg.train.n_disc):
            loss_d = trainer._d_step()
        loss_g = trainer._g_step()
        if check and not torch.isfinite(loss_d + loss_g):
            raise RuntimeError("diverged")
    sync(device)
    return steps / (time.perf_counter() - start)


def on_device_inputs(trainer, steps: int) -> None:
    """Replace the trainer's z and real-batch draws by slices of tensors drawn beforehand on its device."""
    bs, n = trainer.cfg.train.batch_size, steps * (trainer.cfg.train.n_disc + 1) + 8
    device = trainer.device
    z = torch.randn(n, bs, trainer.cfg.model.latent_dim, device=device)
    real = trainer.dataset.sample(n * bs, torch.Generator().manual_seed(0)).to(device).reshape(n, bs, *trainer.dataset.shape)
    counter = {"z": 0, "real": 0}

    def _z(_n):
        counter["z"] = (counter["z"] + 1) % n
        return z[counter["z"]]

    def _real(_n):
        counter["real"] = (counter["real"] + 1) % n
        return real[counter["real"]], None

    trainer._z, trainer._real = _z, _real


def cuda_calls(trainer, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    cuda = [ProfilerActivity.CUDA] if trainer.device.type == "cuda" else []
    with profile(activities=[ProfilerActivity.CPU, *cuda]) as prof:
        steps_per_sec(trainer, steps, check=True)
    out = {}
    for e in prof.key_averages():
        if e.key.startswith("cuda") and e.count >= steps:
            out[e.key] = {"per_step": e.count / steps, "cpu_us_per_step": e.cpu_time_total / steps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="gpu-step.json")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run only")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    results = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__}
    for name, sets in CASES.items():
        cfg = prepare_trial(str(ROOT / "sweeps" / "stability.yaml"),
                            sets + [f"resources.gpu={0.25 if gpu else 0}", "search.scheduler.name=none"])[1]
        trainer = make_trainer(cfg, args.device)
        steps_per_sec(trainer, min(20, args.steps), check=True)  # warm-up
        found = {"calls": cuda_calls(trainer, min(20, args.steps))}
        runs: dict[str, list] = {"as_is": [], "no_check": []}
        for _ in range(args.repeats):
            runs["as_is"].append(steps_per_sec(trainer, args.steps, check=True))
            runs["no_check"].append(steps_per_sec(trainer, args.steps, check=False))
        on_device_inputs(trainer, args.steps)
        runs["device_data"], runs["no_ema"] = [], []
        ema = trainer.ema
        for _ in range(args.repeats):
            trainer.ema = ema
            runs["device_data"].append(steps_per_sec(trainer, args.steps, check=False))
            trainer.ema = None
            runs["no_ema"].append(steps_per_sec(trainer, args.steps, check=False))
        trainer.ema = ema
        found["steps_per_sec"] = {k: statistics.median(v) for k, v in runs.items()}
        found["runs"] = runs
        results[name] = found
        print(name, json.dumps(found["steps_per_sec"]), json.dumps(found["calls"]), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
