"""A real Ray Tune sweep on a GPU, the way stability.yaml ships: fractional GPUs (`resources.gpu: 0.25`),
so four trials share one GPU. Side by side on the same trials (scheduler off, so both variants train the same
configurations to the end): the sweep with whole GPUs (one trial per GPU) and with quarter GPUs.

Reports per variant: wall time, the most trials running at once (from the trials' own start and end times),
the most processes on the GPU at once and their memory (nvidia-smi, sampled every 0.5 s), every trial's
steps/s, and that every trial ended. The networks are small and host-bound on a GPU (docs/benchmarks.md
section 6), so one trial leaves the GPU mostly idle; whether packing pays depends on MPS (without it the
driver time-slices the processes; docs/benchmarks.md section 6 measured both).

    python benchmarks/gpu_sweep.py --out gpu-sweep.json                 # on a machine with a GPU
    python benchmarks/gpu_sweep.py --gpus 0 --cpus 1 --trials 2 --steps 20 --sweep sweeps/quick.yaml
                                           # a smoke run on the CPU (CI), on quick.yaml's small MLPs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from sweeps import TIMESTAMP_RESOLUTION, run_sweep, trial_times  # noqa: E402 (this script's folder)

STABILITY = ROOT / "sweeps" / "stability.yaml"
NOT_A_TRIAL = ("nvidia-cuda-mps-server",)  # MPS's server holds a context on the GPU beside the trials


class GpuWatch:
    """nvidia-smi's compute processes every `every` seconds on a thread: the most at once and the most memory
    one of them held. Off (no samples) for a CPU variant or without nvidia-smi; what nvidia-smi could not
    answer is kept in `error` rather than read as "no processes"."""

    def __init__(self, enabled: bool, every: float = 0.5):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.every, self.samples, self.error, self._stop = every, [], None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                                       "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
                if done.returncode:
                    raise ValueError(f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[:200]}")
                sample = []
                for line in done.stdout.strip().splitlines():
                    pid, rest = line.split(",", 1)
                    name, mem = (x.strip() for x in rest.rsplit(",", 1))  # a process name may hold commas
                    if not name.endswith(NOT_A_TRIAL):
                        sample.append((int(pid), float(mem) if mem.replace(".", "", 1).isdigit() else 0.0))  # "[N/A]"
            except (OSError, subprocess.TimeoutExpired, ValueError) as err:
                self.error = str(err)
                return
            self.samples.append(sample)
            self._stop.wait(self.every)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def summary(self) -> dict:
        return {"samples": len(self.samples), "error": self.error,
                "most_processes_at_once": max((len(s) for s in self.samples), default=0),
                "processes_seen": len({pid for s in self.samples for pid, _ in s}),
                "most_mib_one_process": max((mem for s in self.samples for _, mem in s), default=0.0)}


def most_at_once(spans: list[tuple[float, float]], resolution: float = TIMESTAMP_RESOLUTION) -> int:
    """The most trials whose [start, end] overlap at one moment. Tune's timestamps are whole seconds, so a
    trial that starts in the slot another one freed can read as starting up to a second before that end:
    each start counts up to `resolution` late (never past its own end)."""
    events = sorted([(s + min(resolution, (e - s) / 2), 1) for s, e in spans] + [(e, -1) for _, e in spans])
    now = best = 0
    for _, step in events:  # at a tie the end (-1) sorts first: a slot freed and taken at once is one trial
        now += step
        best = max(best, now)
    return best


def trial_span_and_speed(df) -> tuple[float, float, float]:
    """(start, end, steps/s over the whole trial, evaluations left out) from one trial's Tune results."""
    start, end, _, _ = trial_times(df)
    seconds = (df["step"].diff().fillna(df["step"].iloc[0]) / df["steps_per_sec"]).sum()
    return start, end, float(df["step"].iloc[-1] / seconds)


def variant(folder: Path, gpu: float, trials: int, steps: int, cpus: int, sweep: Path = STABILITY) -> dict:
    sets = [f"resources.gpu={gpu:g}", f"resources.cpu={cpus}", f"search.num_samples={trials}",
            f"search.max_concurrent={trials}", f"train.steps={steps}", f"eval.every={max(1, steps // 2)}",
            "search.scheduler.name=none", "failure.max_failures=0"]
    with GpuWatch(enabled=gpu > 0) as watch:
        wall, t0, dfs = run_sweep(folder, sets, sweep=sweep)
    ran = [trial_span_and_speed(df) for df in dfs if not df.empty]
    speeds = [round(v, 1) for _, _, v in ran]
    return {"gpu_per_trial": gpu, "sets": sets, "wall_s": round(wall, 2), "trials": len(dfs),
            "trials_ended": sum(not df.empty and int(df["step"].iloc[-1]) >= steps for df in dfs),
            "most_trials_at_once": most_at_once([(a, b) for a, b, _ in ran]),
            "spans_s": [[round(a - t0, 1), round(b - t0, 1)] for a, b, _ in ran],  # from the sweep's start
            "steps_per_s": speeds, "median_steps_per_s": statistics.median(speeds) if speeds else None,
            "sweep_log_tail": (folder / "sweep.log").read_text()[-1500:] if len(ran) < trials else "",
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

    if len(set(args.gpus)) != len(args.gpus):
        ap.error("--gpus: each value once")
    if max(args.gpus) > 0 and not torch.cuda.is_available():
        ap.error(f"--gpus {' '.join(f'{g:g}' for g in args.gpus)}: torch sees no CUDA device here "
                 "(--gpus 0 runs the CPU smoke run)")
    sweep = args.sweep.resolve()
    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "cpus": os.cpu_count(),
               "sweep": str(sweep.relative_to(ROOT)) if sweep.is_relative_to(ROOT) else str(sweep),
               "trials": args.trials, "steps": args.steps, "variants": []}
    packed = [g for g in args.gpus if 0 < g < 1]
    if packed and os.cpu_count() < round(1 / min(packed)) * args.cpus:
        print(f"note: {os.cpu_count()} CPUs hold fewer than {round(1 / min(packed))} trials of --cpus "
              f"{args.cpus}: the CPUs, not the GPU, will limit how many trials share it", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for gpu in args.gpus:
            folder = Path(tmp) / f"gpu-{gpu:g}"
            folder.mkdir()
            results["variants"].append(variant(folder, gpu, args.trials, args.steps, args.cpus, sweep))
            print(json.dumps(results["variants"][-1]), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2))  # each variant kept as it ends
    walls = {v["gpu_per_trial"]: v["wall_s"] for v in results["variants"]}
    if 1.0 in walls and 0.25 in walls:
        results["quarter_over_whole_wall"] = round(walls[0.25] / walls[1.0], 3)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "variants"}))


if __name__ == "__main__":
    main()
