"""A real Ray Tune sweep on a GPU, the way stability.yaml ships: fractional GPUs (`resources.gpu: 0.25`),
so four trials share one GPU. Side by side on the same trials (scheduler off, so both variants train the same
configurations to the end): the sweep with whole GPUs (one trial per GPU) and with quarter GPUs.

Reports per variant: wall time, the most trials running at once (from the trials' own start and end times),
the most processes on the GPU at once and their memory (nvidia-smi, sampled every 0.5 s), every trial's
steps/s, and that every trial ended. The networks are small and host-bound on a GPU (docs/benchmarks.md
section 6), which is why packing them pays.

    python benchmarks/gpu_sweep.py --out gpu-sweep.json                 # on a machine with a GPU
    python benchmarks/gpu_sweep.py --gpus 0 --cpus 1 --trials 2 --steps 20 --sweep sweeps/quick.yaml
                                           # a smoke run on the CPU (CI), on quick.yaml's small MLPs
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from sweeps import run_sweep, trial_times  # noqa: E402 (this script's folder)

STABILITY = ROOT / "sweeps" / "stability.yaml"


class GpuWatch:
    """nvidia-smi's compute processes every `every` seconds on a thread: the most at once and the most memory
    one of them held. Without nvidia-smi (a CPU run) it records nothing."""

    def __init__(self, every: float = 0.5):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            rows = [line.split(",") for line in out.strip().splitlines() if line.strip()]
            self.samples.append([(int(pid), float(mem)) for pid, mem in rows])
            self._stop.wait(self.every)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def summary(self) -> dict:
        return {"samples": len(self.samples),
                "most_processes_at_once": max((len(s) for s in self.samples), default=0),
                "processes_seen": len({pid for s in self.samples for pid, _ in s}),
                "most_mib_one_process": max((mem for s in self.samples for _, mem in s), default=0.0)}


def most_at_once(spans: list[tuple[float, float]], resolution: float = 1.0) -> int:
    """The most trials whose [start, end] overlap at one moment. Tune's timestamps are whole seconds, so a
    trial that starts in the slot another one freed can read as starting up to a second before that end:
    overlaps shorter than `resolution` are not counted."""
    events = sorted([(s + resolution, 1) for s, e in spans if e - s > resolution] + [(e, -1) for s, e in spans
                    if e - s > resolution], key=lambda x: (x[0], x[1]))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def variant(folder: Path, gpu: float, trials: int, steps: int, cpus: int, sweep: Path = STABILITY) -> dict:
    sets = [f"resources.gpu={gpu:g}", f"resources.cpu={cpus}", f"search.num_samples={trials}",
            f"search.max_concurrent={trials}", f"train.steps={steps}", f"eval.every={max(1, steps // 2)}",
            "search.scheduler.name=none", "failure.max_failures=0"]
    with GpuWatch() as watch:
        wall, _, dfs = run_sweep(folder, sets, sweep=sweep)
    spans = [trial_times(df)[:2] for df in dfs]
    return {"gpu_per_trial": gpu, "sets": sets, "wall_s": round(wall, 2), "trials": len(dfs),
            "trials_ended": sum(int(df["step"].iloc[-1]) >= steps for df in dfs),
            "most_trials_at_once": most_at_once(spans),
            "steps_per_s": [round(float(df["steps_per_sec"].iloc[-1]), 1) for df in dfs],
            "median_steps_per_s": round(statistics.median(float(df["steps_per_sec"].iloc[-1]) for df in dfs), 1),
            "gpu": watch.summary()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs per trial (stability.yaml: 2)")
    ap.add_argument("--gpus", type=float, nargs="+", default=[0.25, 1.0],
                    help="GPU per trial, one variant each (0: a CPU smoke run)")
    ap.add_argument("--sweep", type=Path, default=STABILITY)
    ap.add_argument("--out", default="gpu-sweep.json")
    args = ap.parse_args()
    import torch

    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "sweep": str(args.sweep.resolve().relative_to(ROOT)), "trials": args.trials, "steps": args.steps, "variants": []}
    with tempfile.TemporaryDirectory() as tmp:
        for gpu in args.gpus:
            folder = Path(tmp) / f"gpu-{gpu:g}"
            folder.mkdir()
            results["variants"].append(variant(folder, gpu, args.trials, args.steps, args.cpus,
                                                   args.sweep.resolve()))
            print(json.dumps(results["variants"][-1]), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2))  # each variant kept as it ends
    walls = {v["gpu_per_trial"]: v["wall_s"] for v in results["variants"]}
    if 1.0 in walls and 0.25 in walls:
        results["quarter_over_whole_wall"] = round(walls[0.25] / walls[1.0], 3)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "variants"}))


if __name__ == "__main__":
    main()
