"""Evaluation cost at the shipped sweeps' settings: the share of a trial's time spent evaluating.

Each case is `ganpipe trial SWEEP` as a user runs it: the sweep's first values (or the `--set`
values listed), its own `eval.every`, its own `resources.cpu` threads, trained for
`--intervals` evaluation intervals. From the trial's `metrics.jsonl` and `result.json`:
  eval_s        seconds per evaluation (median over the trial's evaluations)
  steady_share  eval_s / (eval_s + one interval's training time): the share in a long trial
  wall_share    all evaluation seconds / the trial's whole wall time (start-up, PNGs and checkpoints
                included): what this short trial spent
Cases run interleaved in every repeat; medians (min-max) over repeats.

    python benchmarks/eval_cost.py --repeats 3 --out docs/benchmarks-eval.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"

# the cheapest corner of stability.yaml's space: trains ~10x faster than the protocol evaluates
# (also measured on a GPU by gpu_check.py and gpu_step.py)
STABILITY_MLP_CORNER = ["model.architecture=mlp", "model.width=32", "train.n_disc=1", "train.batch_size=64"]

# case -> (sweep file, --set overrides); no GPU here, so the stability sweep's gpu share is set to 0
CASES = {
    "quick": ("quick.yaml", []),
    "ring8": ("ring8.yaml", []),
    "digits": ("digits.yaml", []),
    "translation": ("translation.yaml", []),
    "stability": ("stability.yaml", ["resources.gpu=0"]),
    "stability-mlp": ("stability.yaml", ["resources.gpu=0", *STABILITY_MLP_CORNER]),
}


def run_case(sweep: str, sets: list[str], intervals: int, every: int | None, folder: Path) -> dict:
    """One `ganpipe trial` of `intervals` evaluation intervals; its figures."""
    from ganpipe.config import load_sweep

    # a single trial has no scheduler; a short one must not trip the check that ASHA's grace period fits
    sets = sets + ["search.scheduler.name=none"] + ([f"eval.every={every}"] if every else [])
    loaded = load_sweep(SWEEPS / sweep, sets)
    every = loaded.trial.eval.every
    cmd = [sys.executable, "-m", "ganpipe.cli", "trial", str(SWEEPS / sweep), "--out", str(folder / "out"),
           "--set", f"train.steps={intervals * every}"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
    result = json.loads((folder / "out" / "result.json").read_text())
    rows = [json.loads(line) for line in (folder / "out" / "metrics.jsonl").read_text().splitlines()]
    eval_s = statistics.median(r["eval_seconds"] for r in rows)
    train_s = statistics.median(every / r["steps_per_sec"] for r in rows)
    return {
        "every": every, "threads": max(1, int(loaded.resources.cpu)),
        "steps_per_sec": statistics.median(r["steps_per_sec"] for r in rows), "eval_s": eval_s,
        "steady_share": eval_s / (eval_s + train_s),
        "wall_share": sum(r["eval_seconds"] for r in rows) / result["wall_seconds"],
        "wall_s": result["wall_seconds"],
    }


BUSY_LOOP = "import torch; torch.set_num_threads(1); a = torch.randn(256, 256)\nwhile True: a = (a @ a).tanh()"


def blas_side_by_side(repeats: int) -> dict:
    """One Stacked-digits evaluation (stability.yaml's protocol) on 1 torch thread, with numpy's BLAS left
    at its default (a thread per core) and limited to 1 as ganpipe.train.threads does, interleaved; on an
    idle machine and beside a process that keeps one core busy, as a sweep's other trial does."""
    import os

    import torch
    from threadpoolctl import threadpool_limits

    from ganpipe.train import make_trainer
    from ganpipe.trial import prepare_trial

    torch.set_num_threads(1)
    _, cfg, _ = prepare_trial(str(SWEEPS / "stability.yaml"), CASES["stability-mlp"][1] + ["search.scheduler.name=none"])
    trainer = make_trainer(cfg)
    trainer.evaluate()  # warm-up
    out = {"cores": os.cpu_count()}
    for load in ("idle", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load != "idle" else None
        try:
            times: dict[str, list] = {"default": [], "1": []}
            for _ in range(repeats):
                for blas in times:
                    with threadpool_limits(None if blas == "default" else 1, user_api="blas"):
                        start = time.perf_counter()
                        trainer.evaluate()
                        times[blas].append(time.perf_counter() - start)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        out[load] = {blas: {"median": statistics.median(t), "range": [min(t), max(t)]} for blas, t in times.items()}
        print("blas", load, json.dumps(out[load]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--intervals", type=int, default=2, help="evaluation intervals per trial")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--every", type=int, help="override eval.every (CI runs tiny; not the shipped settings)")
    parser.add_argument("--blas-repeats", type=int, default=5,
                        help="evaluations per variant in the BLAS-threads comparison (0: skip it)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-eval.json"))
    args = parser.parse_args()
    blas = blas_side_by_side(args.blas_repeats) if args.blas_repeats else None
    runs: dict[str, list] = {name: [] for name in args.cases}
    for _ in range(args.repeats):  # interleaved: drift in machine speed hits every case alike
        for name in args.cases:
            with tempfile.TemporaryDirectory() as tmp:
                sweep, sets = CASES[name]
                runs[name].append(found := run_case(sweep, sets, args.intervals, args.every, Path(tmp)))
            print(name, json.dumps(found), flush=True)
    results: dict = {"blas_threads": blas} if blas else {}
    for name, found in runs.items():
        keys = found[0].keys()
        results[name] = {"sweep": CASES[name][0], "sets": CASES[name][1],
                         "median": {k: statistics.median(f[k] for f in found) for k in keys},
                         "range": {k: [min(f[k] for f in found), max(f[k] for f in found)] for k in keys},
                         "runs": found}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("| case | eval.every | threads | steps/s | s per evaluation | share, long trial | share, this trial |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if name == "blas_threads":
            continue
        m, lo_hi = r["median"], r["range"]
        print(f"| {name} | {m['every']:.0f} | {m['threads']:.0f} | {m['steps_per_sec']:.0f} | {m['eval_s']:.2f} "
              f"({lo_hi['eval_s'][0]:.2f}–{lo_hi['eval_s'][1]:.2f}) | {100 * m['steady_share']:.1f} % "
              f"({100 * lo_hi['steady_share'][0]:.1f}–{100 * lo_hi['steady_share'][1]:.1f}) | "
              f"{100 * m['wall_share']:.1f} % |")


if __name__ == "__main__":
    main()
