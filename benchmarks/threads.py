"""How much a second torch thread speeds up the benchmark models: the hand-written loop of
overhead.py on 1 and 2 threads, interleaved, medians over repeats. This is what a sweep's last
trial gains when it takes an idle CPU (docs/benchmarks.md, core utilisation).

    python benchmarks/threads.py --repeats 3 --out docs/benchmarks-threads.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from overhead import CASES, ROOT, hand_loop

STEPS = {"ring8-mlp": 1500, "digits-dcgan": 400}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-threads.json"))
    args = parser.parse_args()
    from ganpipe.config import first_values, load_sweep, resolve_trial

    results = {}
    for name, raw in CASES.items():
        raw = {**raw, "train": {**raw["train"], "steps": STEPS[name]}}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.yaml"
            path.write_text(yaml.safe_dump(raw))
            sweep = load_sweep(path)
        cfg = resolve_trial(sweep, first_values(sweep.space, sweep.trial))
        rows = {1: [], 2: []}
        for _ in range(args.repeats):
            for threads in rows:  # interleaved, so drift in machine speed hits both alike
                torch.set_num_threads(threads)
                rows[threads].append(hand_loop(cfg))
        med = {t: statistics.median(v) for t, v in rows.items()}
        results[name] = {"steps_per_sec": rows, "median": med, "speedup_2_over_1": med[2] / med[1]}
        print(f"{name}: 1 thread {med[1]:.1f} steps/s, 2 threads {med[2]:.1f} ({med[2] / med[1]:.2f}x)", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
