"""Sweep-level benchmarks on this machine, side by side in one run:

  utilisation  `ganpipe sweep sweeps/quick.yaml`: training CPU-seconds of all trials over
               (wall time x cores) after start-up; start-up to the first trial; scheduling gaps
  peer         the same search (TPE, same seed, same budget, no early stopping) as a plain
               Optuna study in one process with n_jobs = cores, against `ganpipe sweep`
  search       ring8 and grid25 (the quick.yaml space) and digits (sweeps/digits.yaml), S sweep
               seeds each: TPE + ASHA vs random search without early stopping vs the default
               config trained for the same budget in training steps; best fid / diversity
               against steps spent, and the steps each needs to reach the dataset's target
               (SEARCH_CASES)

    python benchmarks/sweeps.py --seeds 3 --out docs/benchmarks-sweeps.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "sweeps" / "quick.yaml"
CORES = os.cpu_count() or 1

# dataset -> the sweep file and overrides its space comes from; the budget in training steps
# (random search's `trials` x `steps`, the same for every method); TPE + ASHA trains trials of up to
# the same `steps` but as many as the budget allows (`asha_trials` is enough to spend it), with ASHA
# as the sweep ships it (quick.yaml: on diversity; digits.yaml: on fid) from `grace` steps; evaluation
# interval; TPE's random start-up trials; the target a method must reach (checked on every evaluation)
SEARCH_CASES = {
    "ring8": {"sweep": QUICK, "sets": [], "trials": 8, "steps": 8000, "asha_trials": 32, "every": 500,
              "grace": 1000, "startup": 8, "target": "8/8 modes, >= 90 % high-quality samples",
              "reached": lambda m: m["modes"] == 8 and m["high_quality"] >= 0.9},
    "grid25": {"sweep": QUICK, "sets": ["data=grid25"], "trials": 8, "steps": 8000, "asha_trials": 32, "every": 500,
               "grace": 1000, "startup": 8, "target": "25/25 modes, >= 80 % high-quality samples",
               "reached": lambda m: m["modes"] == 25 and m["high_quality"] >= 0.8},
    # grid25 with trials long enough to reach its target (the default config needs 16,000-22,000 steps):
    # a space where the default is not already near the best, the case where a search should pay
    "grid25-long": {"sweep": QUICK, "sets": ["data=grid25"], "trials": 8, "steps": 16000, "asha_trials": 32,
                    "every": 1000, "grace": 2000, "startup": 8, "target": "25/25 modes, >= 80 % high-quality samples",
                    "reached": lambda m: m["modes"] == 25 and m["high_quality"] >= 0.8},
    "digits": {"sweep": ROOT / "sweeps" / "digits.yaml", "sets": [], "trials": 8, "steps": 2000, "asha_trials": 24,
               "every": 250, "grace": 500, "startup": 6, "target": "10/10 classes, fid <= 30",
               "reached": lambda m: m["modes"] == 10 and m["fid"] <= 30},
}
METHODS = ("tpe+asha", "random", "default")


def run_sweep(folder: Path, sets: list[str], sweep: Path = QUICK) -> tuple[float, float, list]:
    """Run `ganpipe sweep SWEEP` in `folder`; (wall seconds, start time, per-trial Tune dataframes)."""
    from ray.tune import ExperimentAnalysis

    cmd = [sys.executable, "-m", "ganpipe.cli", "sweep", str(sweep), "--set", "promote.enabled=false"]
    for s in sets:
        cmd += ["--set", s]
    start = time.time()
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode not in (0, 1):  # 1: every trial failed (diverged), still a measured outcome
        raise RuntimeError(f"ganpipe sweep exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    (exp,) = [p for p in (folder / "ray_results").iterdir() if p.is_dir()]
    return wall, start, list(ExperimentAnalysis(str(exp)).trial_dataframes.values())


def trial_times(df) -> tuple[float, float, float, float]:
    """(start, end, core-seconds of training, 1-thread-equivalent training seconds) of one trial.

    Each evaluation interval trained on `threads` threads (more once idle CPUs are shared): its
    core-seconds are its seconds x threads; its 1-thread equivalent is its steps at the speed the
    same trial had on one thread, so a second thread counts only for the speed it really added."""
    start = float(df["timestamp"].iloc[0] - df["time_total_s"].iloc[0])
    end = float(df["timestamp"].iloc[-1])
    steps = df["step"].diff().fillna(df["step"].iloc[0])
    seconds = steps / df["steps_per_sec"]
    threads = df["threads"] if "threads" in df else 1
    one = df["steps_per_sec"][threads == 1] if "threads" in df else df["steps_per_sec"]
    one_thread_speed = float(one.median()) if len(one) else float(df["steps_per_sec"].median())
    return start, end, float((seconds * threads).sum()), float((steps / one_thread_speed).sum())


def utilisation(folder: Path, trials: int, steps: int, share_idle_cpus: bool) -> dict:
    wall, t0, dfs = run_sweep(folder, [f"search.num_samples={trials}", f"train.steps={steps}",
                                       f"eval.every={max(1, steps // 8)}",
                                       f"search.scheduler.grace_period={max(1, steps // 4)}",
                                       f"resources.share_idle_cpus={str(share_idle_cpus).lower()}"])
    timed = sorted(((trial_times(df), df) for df in dfs), key=lambda t: t[0][0])
    spans = [t for t, _ in timed]
    first, last = spans[0][0], max(end for _, end, _, _ in spans)
    gaps = scheduling_gaps([(start, end) for start, end, _, _ in spans])
    ends = sorted(end for _, end, _, _ in spans)
    cut = ends[-CORES] if len(ends) >= CORES else last  # from here on fewer trials than slots are left
    # core-seconds up to `cut`, each trial's spread evenly over its span
    busy = sum(t * (min(end, cut) - start) / max(end - start, 1e-9) for start, end, t, _ in spans if start < cut)
    return {
        "wall_s": wall,
        "startup_to_first_trial_s": first - t0,
        "last_trial_alone_s": last - cut,
        "utilisation_until_a_slot_has_nothing_left": busy / ((cut - first) * CORES),
        "utilisation_after_startup": sum(t for _, _, t, _ in spans) / ((last - first) * CORES),
        "one_thread_equivalent_utilisation": sum(w for _, _, _, w in spans) / ((last - first) * CORES),
        "max_threads": max(int(df["threads"].max()) if "threads" in df else 1 for df in dfs),
        "median_scheduling_gap_s": statistics.median(gaps) if gaps else None,
        "trials": len(spans),
        # seconds from the command's start, per trial and per gap: a surprising median can be traced
        # to the trials behind it
        "spans": [{"start": round(start - t0, 2), "end": round(end - t0, 2), "steps": int(df["step"].iloc[-1]),
                   "max_threads": int(df["threads"].max()) if "threads" in df else 1}
                  for (start, end, _, _), df in timed],
        "gaps_s": [round(g, 2) for g in gaps],
    }


TIMESTAMP_RESOLUTION = 1.0  # Tune's `timestamp` is whole seconds, so every start and end is up to 1 s early


def scheduling_gaps(spans: list[tuple[float, float]]) -> list[float]:
    """(start, end) per trial, in start order -> for each trial after the first CORES, the time from the end
    that freed its slot to its start, 0 where the two lie within the timestamps' resolution (an end up to
    1 s "after" a start is the end that freed it: taking the end before it made 10-14 s gaps of nothing)."""
    gaps = []
    for start, _ in spans[CORES:]:
        freed = [end for _, end in spans if end <= start + TIMESTAMP_RESOLUTION]
        if freed:
            gaps.append(max(0.0, start - max(freed)))
    return gaps


def alternating(repeats: int, variants: tuple) -> list:
    """The variants in every repeat, the order reversed every other repeat, so that none always runs first."""
    return [v for r in range(repeats) for v in (variants if r % 2 == 0 else variants[::-1])]


def summary(found: list[dict]) -> dict:
    """Every numeric figure's median over the runs, its min-max under "range", and the runs themselves."""
    numbers = {k: [f[k] for f in found if f[k] is not None] for k, v in found[0].items()
               if v is None or isinstance(v, (int, float))}  # a gap is None where no trial waited
    return {**{k: statistics.median(v) if v else None for k, v in numbers.items()},
            "range": {k: [min(v), max(v)] for k, v in numbers.items() if v}, "runs": found}


def utilisation_side_by_side(tmp: Path, trials: int, steps: int, repeats: int) -> dict:
    """The same sweep without and with idle-CPU sharing, `repeats` times, interleaved."""
    runs: dict[bool, list] = {False: [], True: []}
    for i, share in enumerate(alternating(repeats, (False, True))):
        folder = tmp / f"u{i}-{share}"
        folder.mkdir()
        runs[share].append(found := utilisation(folder, trials, steps, share))
        print("utilisation", f"share_idle_cpus={share}", json.dumps(
            {k: v for k, v in found.items() if k != "spans"}), flush=True)
    return {f"share_idle_cpus={share}": summary(found) for share, found in runs.items()}


def best_curve(dfs, reached_fn=SEARCH_CASES["ring8"]["reached"], budget: int | None = None
               ) -> list[tuple[int, float, float, bool]]:
    """(steps spent so far, best fid so far, its diversity, target reached so far) in time order,
    up to `budget` steps spent (what came after does not count)."""
    events = []
    for df in dfs:
        prev = 0
        for _, row in df.iterrows():
            events.append((float(row["timestamp"]), int(row["step"]) - prev, row))
            prev = int(row["step"])
    events.sort(key=lambda e: e[0])
    spent, best, curve, reached = 0, None, [], False
    for _, steps, row in events:
        if budget is not None and spent + steps > budget:
            break
        spent += steps
        if best is None or row["fid"] < best["fid"]:
            best = row
        reached = reached or bool(reached_fn(row))
        curve.append((spent, float(best["fid"]), float(best["diversity"]), reached))
    return curve


def every_of(case: dict, scale: float = 1.0) -> int:
    return max(50, round(case["every"] * min(scale * 10, 1.0)))  # CI's tiny runs evaluate more often


def budget_of(case: dict, scale: float = 1.0) -> tuple[int, int]:
    """(random search's trials, steps per trial); `scale` shrinks both (CI runs tiny)."""
    every = every_of(case, scale)
    trials = max(2, round(case["trials"] * scale))
    steps = max(2 * every, round(case["steps"] * scale / every) * every)
    return trials, steps


def search(folder: Path, seed: int, case: dict, scale: float = 1.0) -> dict:
    """The three methods at an equal budget of trials x steps training steps."""
    trials, steps = budget_of(case, scale)
    budget, every = trials * steps, every_of(case, scale)
    common = case["sets"] + [f"search.seed={seed}", f"train.steps={steps}", f"eval.every={every}"]
    out = {"budget": {"trials": trials, "steps_per_trial": steps, "steps": budget}}
    for label, sets in {
        # ASHA stops most trials early, so TPE + ASHA runs more of them; steps past the budget do not count
        "tpe+asha": [f"search.scheduler.grace_period={min(case['grace'], steps // every // 2 * every)}",
                     f"search.startup_trials={case['startup']}",
                     f"search.num_samples={max(trials + 1, round(case['asha_trials'] * max(scale, 0.1)))}"],
        "random": ["search.sampler=random", "search.scheduler.name=none", f"search.num_samples={trials}"],
    }.items():
        sub = folder / label
        sub.mkdir()
        _, _, dfs = run_sweep(sub, common + sets, case["sweep"])
        out[label] = summarise(best_curve(dfs, case["reached"], budget), len(dfs))
        out[label]["trial_records"] = trial_records(dfs, case["reached"])
    # the default config (first choice / midpoint) trained once for the whole budget
    sub = folder / "default"
    sub.mkdir()
    from ganpipe.config import first_values, load_sweep

    sweep = load_sweep(case["sweep"], case["sets"])
    defaults = [f"{k}={v}" for k, v in first_values(sweep.space, sweep.trial).items()]
    _, _, dfs = run_sweep(sub, case["sets"] + defaults + [
        "search.num_samples=1", "search.scheduler.name=none", "search.sampler=random",
        f"train.steps={budget}", f"eval.every={max(every, steps // 4)}", f"train.seed={seed}"], case["sweep"])
    out["default"] = summarise(best_curve(dfs, case["reached"]), 1)
    out["default"]["trial_records"] = trial_records(dfs, case["reached"])
    return out


def summarise(curve: list, trials: int) -> dict:
    return {"steps_spent": curve[-1][0], "best_fid": curve[-1][1], "diversity": curve[-1][2], "trials": trials,
            "steps_to_target": next((s for s, _, _, r in curve if r), None), "curve": curve}


def trial_records(dfs, reached_fn) -> list[dict]:
    """Per trial, in start order: its searched values, the steps it trained (fewer than the trial length:
    ASHA stopped it), its best fid and that evaluation's diversity, and the first of its own steps at which
    it met the target (None: never). This is what says whether the early stopping stopped a trial that
    would have met the target, or which values the best trial had. Unlike the curve, this counts steps a
    trial trained after its method's budget was spent. The searched values are the `config/...` columns Tune
    puts in every result."""
    records = []
    for df in sorted((d for d in dfs if not d.empty), key=lambda d: float(d["timestamp"].iloc[0] - d["time_total_s"].iloc[0])):
        best = df.loc[df["fid"].idxmin()]
        hit = next((int(row["step"]) for _, row in df.iterrows() if reached_fn(row)), None)
        first = df.iloc[0]
        records.append({"config": {c.removeprefix("config/"): first[c].item() if hasattr(first[c], "item") else first[c]
                                   for c in df.columns if c.startswith("config/")},
                        "steps": int(df["step"].iloc[-1]), "best_fid": float(best["fid"]),
                        "diversity_at_best": float(best["diversity"]), "reached_at_step": hit})
    return records


def peer(folder: Path, trials: int, steps: int, repeats: int = 1) -> dict:
    """Plain Optuna, one process, n_jobs = cores, the same trainable and TPE seed, no early stopping, against
    `ganpipe sweep`; `repeats` times, interleaved."""
    runs: dict[str, list] = {"optuna_n_jobs": [], "ganpipe_sweep": []}
    for i, name in enumerate(alternating(repeats, tuple(runs))):
        sub = folder / f"{name}-{i}"
        sub.mkdir()
        runs[name].append(found := (plain_optuna if name == "optuna_n_jobs" else ganpipe_sweep)(sub, trials, steps))
        print("peer", name, json.dumps(found), flush=True)
    out = {name: summary(found) for name, found in runs.items()}
    out["wall_ratio_per_repeat"] = [g["wall_s"] / o["wall_s"]
                                    for g, o in zip(runs["ganpipe_sweep"], runs["optuna_n_jobs"])]
    return out


def plain_optuna(folder: Path, trials: int, steps: int) -> dict:
    import optuna
    import torch

    from ganpipe.config import load_sweep, resolve_trial, suggest
    from ganpipe.train.loop import Trainer

    sweep = load_sweep(QUICK, [f"train.steps={steps}", "search.scheduler.name=none", f"eval.every={max(1, steps // 8)}"])
    torch.set_num_threads(1)

    def objective(trial):
        cfg = resolve_trial(sweep, suggest(trial, sweep.space, sweep.trial))
        result = Trainer(cfg).train()
        return result.best["fid"] if result.status == "finished" else float("inf")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    start = time.time()
    study.optimize(objective, n_trials=trials, n_jobs=CORES)
    return {"wall_s": time.time() - start, "best_fid": study.best_value}


def ganpipe_sweep(folder: Path, trials: int, steps: int) -> dict:
    """The whole command's wall time, and its start-up (to the first trial's start), which plain Optuna's
    wall time, taken around study.optimize, does not include."""
    wall, t0, dfs = run_sweep(folder, [f"train.steps={steps}", f"search.num_samples={trials}",
                                       f"eval.every={max(1, steps // 8)}", "search.scheduler.name=none",
                                       "search.objectives=[fid]", "search.seed=0"])
    first = min(trial_times(df)[0] for df in dfs)
    return {"wall_s": wall, "startup_s": first - t0, "best_fid": min(float(df["fid"].min()) for df in dfs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=1, help="utilisation and peer: runs of each variant")
    parser.add_argument("--only", choices=["utilisation", "peer", "search"], action="append")
    parser.add_argument("--datasets", nargs="+", choices=list(SEARCH_CASES), default=["ring8", "grid25", "digits"],
                        help="grid25-long: hours on 2 cores, so only when named")
    parser.add_argument("--scale", type=float, default=1.0, help="search: multiply the budget (CI runs tiny)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-sweeps.json"))
    parser.add_argument("--report", action="store_true",
                        help="run nothing: print the utilisation and search tables of --out and draw their curves in --png")
    parser.add_argument("--png", default=str(ROOT / "docs" / "images" / "search-curves.png"),
                        help="--report: where the search curves are drawn")
    args = parser.parse_args()
    if args.report:
        results = json.loads(Path(args.out).read_text())
        if "utilisation" in results:
            print(utilisation_report(results))
        print(report(results, Path(args.png)))
        return
    parts = args.only or ["utilisation", "peer", "search"]
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    results["machine"] = {"cores": CORES}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "utilisation" in parts:
            results["utilisation"] = utilisation_side_by_side(tmp, args.trials, args.steps, args.repeats)
            save(results, args.out)
        if "peer" in parts:
            (tmp / "p").mkdir()
            results["peer"] = peer(tmp / "p", args.trials, args.steps, args.repeats)
            save(results, args.out)
        if "search" in parts:
            results["search"] = {k: v for k, v in results.get("search", {}).items() if k in SEARCH_CASES}
            before = {name: results["search"].get(name, {}).get("seeds", {}) for name in args.datasets}
            for name in args.datasets:
                results["search"][name] = {"target": SEARCH_CASES[name]["target"], "seeds": {}}
            for seed in range(args.seeds):  # seed by seed: an interrupted run has every dataset at least once
                for name in args.datasets:
                    case = SEARCH_CASES[name]
                    trials, steps = budget_of(case, args.scale)
                    done = before[name].get(str(seed))
                    if done and done["budget"]["trials"] == trials and done["budget"]["steps_per_trial"] == steps:
                        results["search"][name]["seeds"][str(seed)] = done
                        continue
                    (tmp / f"{name}-{seed}").mkdir()
                    res = search(tmp / f"{name}-{seed}", seed, case, args.scale)
                    results["search"][name]["seeds"][str(seed)] = res
                    summary = {k: {kk: vv for kk, vv in v.items() if kk not in ("curve", "trial_records")}
                               for k, v in res.items()}
                    print("search", name, "seed", seed, json.dumps(summary), flush=True)
                    save(results, args.out)  # after every seed: a long run keeps what it measured
    save(results, args.out)


LABELS = {"tpe+asha": "TPE + ASHA", "random": "random search", "default": "default config"}


def report(results: dict, png: Path) -> str:
    """Markdown tables of the search results, and their curves (best fid so far against steps spent) in `png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = results["search"]
    rows = ["| dataset | seed | method | trials | best fid at 25 / 50 / 75 / 100 % of the budget | "
            "diversity of that trial | steps to target |", "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(search), figsize=(5 * len(search), 3.6), squeeze=False)
    for ax, (name, data) in zip(axes[0], search.items()):
        for seed, res in sorted(data["seeds"].items()):
            budget = res["budget"]["steps"]
            for method, colour in zip(METHODS, ("tab:blue", "tab:orange", "tab:green")):
                r = res[method]
                points = []
                for frac in (0.25, 0.5, 0.75, 1.0):
                    upto = [p for p in r["curve"] if p[0] <= frac * budget]
                    points.append(f"{upto[-1][1]:.3g}" if upto else "—")
                hit = f"{r['steps_to_target']:,}" if r["steps_to_target"] else "—"
                rows.append(f"| {name} | {seed} | {LABELS[method]} | {r.get('trials', '')} | {' / '.join(points)} "
                            f"| {r['diversity']:.2f} | {hit} |")
                xs, ys = [p[0] for p in r["curve"]], [p[1] for p in r["curve"]]
                ax.step(xs, ys, where="post", color=colour, alpha=0.8, linestyle=("-", "--", ":")[int(seed) % 3],
                        label=f"{LABELS[method]}, seed {seed}")
                if r["steps_to_target"]:
                    ax.plot([r["steps_to_target"]], [dict((p[0], p[1]) for p in r["curve"])[r["steps_to_target"]]],
                            marker="*", color=colour, markersize=11)
        ax.set_yscale("log")
        ax.set_title(f"{name} (target: {data['target']})", fontsize=8)
        ax.set_xlabel("training steps spent")
        ax.set_ylabel("best fid so far")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    summary = ["| dataset | " + " | ".join(LABELS[m] for m in METHODS) + " |", "|---|---|---|---|"]
    for name, data in search.items():
        cells = []
        for method in METHODS:
            hits = [data["seeds"][s][method]["steps_to_target"] for s in sorted(data["seeds"])]
            cells.append(", ".join(f"{h:,}" if h else "—" for h in hits))
        summary.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\nSteps to the target, by seed:\n\n" + "\n".join(summary) + "\n"


UTILISATION_ROWS = {
    "utilisation_after_startup": ("core-seconds of training / (wall x cores), first trial start -> last trial end", "{:.3f}"),
    "one_thread_equivalent_utilisation": ("the same in 1-thread-equivalent work", "{:.3f}"),
    "utilisation_until_a_slot_has_nothing_left": ("the same, until a slot has no trial left to start", "{:.3f}"),
    "last_trial_alone_s": ("the last trial(s) running with fewer trials than slots, s", "{:.0f}"),
    "startup_to_first_trial_s": ("start-up: command start -> first trial running, s", "{:.1f}"),
    "median_scheduling_gap_s": ("median scheduling gap: a trial ends -> the next starts on its slot, s", "{:.2f}"),
    "wall_s": ("whole command, wall, s", "{:.1f}"),
}


def utilisation_report(results: dict) -> str:
    """Markdown: the utilisation figures per variant, median (min-max over the repeats)."""
    variants = results["utilisation"]
    rows = ["| measure | " + " | ".join(f"`{k.replace('=', ': ').replace('False', 'false').replace('True', 'true')}`"
                                       for k in variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for key, (label, fmt) in UTILISATION_ROWS.items():
        cells = []
        for found in variants.values():
            value, lo_hi = found.get(key), found.get("range", {}).get(key)
            cell = "—" if value is None else fmt.format(value)
            if lo_hi and lo_hi[0] != lo_hi[1]:
                cell += f" ({fmt.format(lo_hi[0])}–{fmt.format(lo_hi[1])})"
            cells.append(cell)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    gaps = {k: [g for run in v.get("runs", []) for g in run["gaps_s"]] for k, v in variants.items()}
    rows.append("")
    rows += [f"every gap, {k}: {sorted(v)}" for k, v in gaps.items() if v]
    return "\n".join(rows) + "\n"


def save(results: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
