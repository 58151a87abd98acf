"""The metric sanity panel and the figures docs/metrics.md states, written into its marked section.

  panel      every generator of ganpipe.metrics.panel on ring8, grid25, digits and stacked-digits at the protocol's
             sizes, every Evaluator metric, and the pairs the protocol orders that fid / kid / mode_tv order otherwise
  floors     mode_tv of the real mixture itself (2,500 samples, --draws draws), kl_floor at the protocol's sizes
  timing     seconds per Evaluator.evaluate (median of --repeats, after a warm-up; 1 torch and 1 BLAS thread), and
             KID's share of it; with --before DIR also the code in DIR (e.g. `git archive HEAD~1 | tar -x -C DIR`),
             run alternately with this tree so drift in machine speed hits both alike

    python benchmarks/metric_panel.py --before /tmp/before
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("ring8", "grid25", "digits", "stacked-digits")
TIMED = ("ring8", "digits", "stacked-digits")
START, END = "<!-- metric-panel:start -->", "<!-- metric-panel:end -->"
COLUMNS = ("modes", "high_quality", "kl", "kl_floor", "mode_tv", "fid", "kid", "precision", "coverage")

# run in a fresh interpreter per tree: seconds per evaluate (and per KID) for TIMED, as JSON on the last line
TIMING = """
import json, statistics, sys, time, torch
from threadpoolctl import threadpool_limits
from ganpipe.data import get_dataset
from ganpipe.metrics import Evaluator
torch.set_num_threads(1)
out = {}
with threadpool_limits(1, user_api="blas"):
    for name in sys.argv[2:]:
        ds = get_dataset(name)
        ev = Evaluator(ds)
        fake = ds.sample(ev.num_samples, torch.Generator().manual_seed(5))
        ev.evaluate(fake)
        total, kid = [], []
        for _ in range(int(sys.argv[1])):
            start = time.perf_counter()
            ev.evaluate(fake)
            total.append(time.perf_counter() - start)
            if hasattr(ev, "_distances"):  # this tree: KID alone, on the same features
                feats, _ = ev._extractor(fake)
                start = time.perf_counter()
                ev._distances.kid.reset()
                ev._distances.kid.update(feats, real=False)
                ev._distances.kid.compute()
                kid.append(time.perf_counter() - start)
        out[name] = {"eval_s": statistics.median(total), "kid_s": statistics.median(kid) if kid else None}
print(json.dumps(out))
"""


def timing(tree: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", TIMING, str(repeats), *TIMED], env=env, cwd=tree,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def mode_tv_floor(name: str, draws: int) -> tuple[float, float]:
    import torch

    from ganpipe.data import get_dataset
    from ganpipe.metrics import point_mode_stats

    ds = get_dataset(name)
    g = torch.Generator().manual_seed(0)
    tvs = [point_mode_stats(ds.sample(2500, g), ds.centers, ds.std)["mode_tv"] for _ in range(draws)]
    return statistics.mean(tvs), statistics.stdev(tvs)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def panel_markdown() -> list[str]:
    from ganpipe.metrics.panel import dominance_pairs, misranked, run_panel

    lines = []
    for name in DATASETS:
        rows = run_panel(name)
        cols = [c for c in COLUMNS if c in next(iter(rows.values()))]
        lines += [f"#### {name}", "", "| generator | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {gen} | " + " | ".join(_fmt(m[c]) for c in cols) + " |" for gen, m in rows.items()]
        pairs = dominance_pairs(rows)
        lines += ["", f"{len(pairs)} pairs A ≻ B (A dominates B on the protocol's figures); those a score does not "
                  "rank A better:"]
        for score in ("mode_tv", "fid", "kid"):
            if score in cols:
                wrong = misranked(rows, pairs, score)
                lines.append(f"- {score}: " + (", ".join(f"{a} ≻ {b}" for a, b in wrong) or "none"))
        lines.append("")
        print(name, "done", flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "docs" / "metrics.md"))
    parser.add_argument("--before", help="a copy of the code before the change, timed alternately with this tree")
    parser.add_argument("--repeats", type=int, default=5, help="timed evaluations per dataset and run")
    parser.add_argument("--runs", type=int, default=3, help="alternating timing runs per tree")
    parser.add_argument("--draws", type=int, default=200, help="draws of the real mixture for the mode_tv floor")
    args = parser.parse_args()
    from ganpipe.metrics.modes import kl_floor

    lines = [START, "", "### Panel (protocol sizes)", ""] + panel_markdown()
    lines += ["### Floors", "", "| what | value |", "|---|---|"]
    for name in ("ring8", "grid25"):
        mean, sd = mode_tv_floor(name, args.draws)
        lines.append(f"| mode_tv, {name}, 2,500 samples of the mixture itself ({args.draws} draws) | {mean:.4f} ± {sd:.4f} |")
    for name, n, m in (("digits", 2000, 10), ("stacked-digits", 10_000, 1000), ("stacked-digits", 26_000, 1000)):
        lines.append(f"| kl_floor, {name}, {n:,} samples | {kl_floor(n, m):.5f} (rule of thumb (K-1)/2N: {(m - 1) / (2 * n):.5f}) |")
    trees = {"after": ROOT} | ({"before": Path(args.before)} if args.before else {})
    runs: dict[str, list] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree, path in trees.items():
            runs[tree].append(timing(path, args.repeats))
            print(tree, runs[tree][-1], flush=True)
    lines += ["", "### Seconds per evaluation (1 thread; median over runs)", "",
              "| dataset | " + " | ".join(trees) + " | KID alone |", "|---" * (len(trees) + 2) + "|"]
    for name in TIMED:
        cells = [f"{statistics.median(r[name]['eval_s'] for r in runs[tree]):.3f}" for tree in trees]
        kid = statistics.median(r[name]["kid_s"] for r in runs["after"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {kid:.3f} |")
    lines += ["", END]
    doc = Path(args.out)
    text = doc.read_text() if doc.exists() else f"{START}\n{END}\n"
    head, rest = text.split(START, 1)
    doc.write_text(head + "\n".join(lines) + rest.split(END, 1)[1])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
