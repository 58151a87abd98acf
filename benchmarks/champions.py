"""Champion quality against the published tables (issue 21, table 1): a shipped pipeline (broad -> narrow ->
seed re-check -> promote) per benchmark, run once per pipeline seed, each champion scored in a fresh process
the way the papers score (benchmarks/score_champion.py: VEEGAN/PacGAN protocol, 2,500 samples, 3 std on the
2-D mixtures; 26,000 samples and 1,000 digit-triple modes on Stacked-digits).

    python benchmarks/champions.py --cases ring8 grid25 --seeds 0 1 2 --out docs/benchmarks-champions.json
    python benchmarks/champions.py --cases grid25-broad --seeds 0 1 2      # from a broad space: hours on 2 cores
    python benchmarks/champions.py --cases stacked-digits --address auto   # a GPU cluster's recipe
    python benchmarks/champions.py --tiny --out /tmp/champions.json      # CI: pipelines/ci-ring8.yaml, seed 0

Each run is `ganpipe run PIPELINE --set search.seed=S --set train.seed=S` in its own scratch folder
(its own ./mlflow.db and ./ray_results), with the pipeline's own promotion gate; a pipeline that refuses
to promote is recorded as refused, with its reason, and counts as a miss. The table reports the median over
the seeds of modes covered, % high-quality samples and KL, the pipeline's wall time, and the published row.
Seeds can be run a few at a time into one --out: the file's runs of other seeds are kept when they ran the same
recipe (the pipeline and sweep files' digest, and the same --set).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from score_champion import MIXTURES, STACKED_MODES  # beside this script (benchmarks/ is on sys.path when it runs)

ROOT = Path(__file__).resolve().parents[1]
SCORER = ROOT / "benchmarks" / "score_champion.py"

# published rows: PacGAN (Lin et al. 2018), Tables 1 and 2; the goals are issue 21's
CASES = {
    "ring8": {"pipeline": "pipelines/ring8.yaml", "model": "ring8", "dataset": "ring8",
              "published": "PacGAN2: 7.9 +- 0.1 modes, 95.6 % high-quality, KL 0.07",
              "goal": {"modes": 8, "high_quality": 0.97}},
    "grid25": {"pipeline": "pipelines/grid25.yaml", "model": "grid25", "dataset": "grid25",
               "published": "PacGAN4: 24.8 +- 0.2 modes, 93.6 % high-quality, KL 0.04",
               "goal": {"modes": 25, "high_quality": 0.95}},
    # the GPU-sized stability recipe (128 + 64 trials of 20,000 steps; hours on 2 CPU cores per trial at
    # its best settings: docs/benchmarks.md 9b); its sweep promotes under the name "stability"
    "stacked-digits": {"pipeline": "pipelines/stability.yaml", "model": "stability", "dataset": "stacked-digits",
                       "published": "PacDCGAN2: 1000 modes, KL 0.06 (26,000 samples)",
                       "goal": {"modes": 1000, "kl_above_floor": 0.02}},
}
# grid25 from a broad space with no default known to be good (32 + 16 trials of 24,000 steps)
CASES["grid25-broad"] = {**CASES["grid25"], "pipeline": "pipelines/grid25-broad.yaml", "model": "grid25-broad"}
TINY = {"pipeline": "pipelines/ci-ring8.yaml", "model": "ci-ring8", "dataset": "ring8",
        "published": CASES["ring8"]["published"], "goal": CASES["ring8"]["goal"]}


def run_pipeline(case: dict, seed: int, folder: Path, extra_sets: list[str], address: str | None = None) -> dict:
    """One pipeline run in `folder`; its exit code, wall time, promotion outcome and the champion's URI."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    sets = [f"search.seed={seed}", f"train.seed={seed}", *extra_sets]
    cmd = [sys.executable, "-m", "ganpipe.cli", "run", str(ROOT / case["pipeline"]), *(a for s in sets for a in ("--set", s)),
           *(["--address", address] if address else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (folder / "pipeline.log").write_text(proc.stdout + proc.stderr)
    state = sorted(folder.glob("ray_results/*/pipeline.json"))
    stages = json.loads(state[-1].read_text())["stages"] if state else {}
    promote = next((s for s in stages.values() if s.get("kind") == "promote"), {})
    out = {"seed": seed, "exit_code": proc.returncode, "wall_s": round(wall, 1), "sets": sets,
           "outcome": promote.get("outcome", "no promote stage ran"), "message": promote.get("message", "")}
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and out["outcome"] != "refused"):
        out["error"] = (proc.stdout + proc.stderr)[-2000:]
    if promote.get("version"):
        out["model_uri"] = f"models:/{promote['model']}/{promote['version']}"
    return out


def score(model_uri: str, dataset: str, folder: Path, z_seed: int) -> dict:
    """The published protocol in a fresh interpreter (-I: no ganpipe on the path, no user site)."""
    proc = subprocess.run([sys.executable, "-I", str(SCORER), model_uri, "--dataset", dataset, "--seed", str(z_seed),
                           "--tracking-uri", "sqlite:///mlflow.db", "--json"],
                          cwd=folder, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def recipe_digest(case: dict) -> str:
    """What a champion depends on besides the seed and --set: the pipeline file and the sweep file it names, as
    parsed (their comments may change)."""
    path = ROOT / case["pipeline"]
    pipeline = yaml.safe_load(path.read_text())
    sweep = yaml.safe_load((path.parent / pipeline["sweep"]).read_text())
    return hashlib.sha256(json.dumps([pipeline, sweep], sort_keys=True).encode()).hexdigest()[:16]


def modes_of(dataset: str) -> int:
    return STACKED_MODES if dataset == "stacked-digits" else len(MIXTURES[dataset][0])


def meets(goal: dict, s: dict) -> bool:
    """A score against the case's goal: modes, and % high-quality (2-D) or KL above the real data's (stacked)."""
    return (s["modes"] >= goal["modes"] and s.get("high_quality", 1.0) >= goal.get("high_quality", 0.0)
            and s["kl"] - s.get("kl_floor", 0.0) <= goal.get("kl_above_floor", math.inf))


def summarise(case: dict, runs: list[dict]) -> dict:
    """Medians over the seeds; a refused or failed run counts as 0 modes, 0 % high-quality and KL log(K)."""
    of = modes_of(case["dataset"])
    keys = ("modes", "kl") if case["dataset"] == "stacked-digits" else ("modes", "high_quality", "kl")
    miss = {"modes": 0, "high_quality": 0.0, "kl": math.log(of)}
    scores = [r.get("score") or miss for r in runs]
    med = {k: statistics.median(s[k] for s in scores) for k in keys}
    floors = [s["kl_floor"] for s in scores if "kl_floor" in s]  # the real data's KL: not a miss's to set
    if floors:
        med["kl_floor"] = statistics.median(floors)
    return {"median": med, "of": of, "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "seeds_meeting_goal": sum(meets(case["goal"], s) for s in scores), "seeds": len(runs),
            "promoted": sum("score" in r for r in runs), "goal_met_by_median": meets(case["goal"], med)}


def goal_text(goal: dict, of: int) -> str:
    if "high_quality" in goal:
        return f"{goal['modes']}/{of} modes, >= {100 * goal['high_quality']:.0f} % HQ"
    return f"{goal['modes']}/{of} modes, KL <= real data's + {goal['kl_above_floor']}"


def quality(sc: dict | None) -> str:
    """The % HQ and KL cells of a score (stacked: no % HQ; KL beside the real data's)."""
    if not sc:
        return "- | -"
    if "kl_floor" in sc:
        return f"- | {sc['kl']:.3f} (real {sc['kl_floor']:.3f})"
    return f"{100 * sc['high_quality']:.1f} | {sc['kl']:.3f}"


def table(results: dict) -> str:
    lines = ["| benchmark | pipeline | seeds | promoted | median modes | median % HQ | median KL | median wall | "
             "seeds meeting the goal | goal | best published |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in results["cases"].items():
        c, s = res["case"], res["summary"]
        g = c["goal"]
        lines.append(f"| {name} | `{c['pipeline']}` | {s['seeds']} | {s['promoted']} | {s['median']['modes']:g}/{s['of']} | "
                     f"{quality(s['median'])} | {s['median_wall_s']:.0f} s | "
                     f"{s['seeds_meeting_goal']}/{s['seeds']} | {goal_text(g, s['of'])} | {c['published']} |")
    per_seed = ["", "| benchmark | seed | outcome | modes | % HQ | KL | wall |", "|---|---|---|---|---|---|---|"]
    for name, res in results["cases"].items():
        for r in res["runs"]:
            sc = r.get("score")
            per_seed.append(f"| {name} | {r['seed']} | {r['outcome']} | " + (f"{sc['modes']}/{sc['of']}" if sc else "-")
                            + f" | {quality(sc)} | {r['wall_s']:.0f} s |")
    return "\n".join(lines + per_seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["ring8", "grid25"],
                    help="default: the two CPU recipes (grid25-broad takes hours here, stacked-digits a GPU cluster)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--tiny", action="store_true", help="the CI size: pipelines/ci-ring8.yaml, seed 0")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="passed to every `ganpipe run` (after the seeds)")
    ap.add_argument("--address", help="a Ray cluster for every `ganpipe run` (e.g. auto); default in-process Ray")
    ap.add_argument("--work", type=Path, help="scratch folder (kept); default a temporary one, removed")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cases = {"ci-ring8": TINY} if args.tiny else {n: CASES[n] for n in args.cases}
    seeds = [0] if args.tiny else args.seeds
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="ganpipe-champions-")
    work = args.work or Path(tmp.name)
    # seed by seed into one file: another seed's run of the same recipe (pipeline and sweep files, --set) is kept
    previous = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "protocol": "VEEGAN/PacGAN: 2,500 samples, 3 std, a mode counts with >= 20 high-quality samples; "
                           "z seed = pipeline seed", "cases": previous.get("cases", {})}
    for name, case in cases.items():
        digest = recipe_digest(case)
        runs = [r for r in results["cases"].get(name, {}).get("runs", [])
                if r.get("recipe") == digest and r["sets"][2:] == args.set and r["seed"] not in seeds]
        for seed in seeds:
            folder = work / f"{name}-seed{seed}"
            print(f"{name} seed {seed}: ganpipe run {case['pipeline']} ...", flush=True)
            r = {**run_pipeline(case, seed, folder, args.set, args.address), "recipe": digest}
            if "model_uri" in r:
                r["score"] = score(r["model_uri"], case["dataset"], folder, z_seed=seed)
            print(f"  {r['outcome']} in {r['wall_s']:.0f} s" + (f": {r['score']}" if "score" in r else f": {r['message']}"),
                  flush=True)
            runs.append(r)
        runs.sort(key=lambda r: r["seed"])
        results["cases"][name] = {"case": case, "runs": runs, "summary": summarise(case, runs)}
    results["table"] = table(results)
    print(results["table"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    if tmp:
        tmp.cleanup()
    return 1 if any("error" in r for c in results["cases"].values() for r in c["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
