"""Sweep-level benchmarks on this machine, side by side in one run:

  utilisation  `ganpipe sweep sweeps/quick.yaml`: training CPU-seconds of all trials over
               (wall time x cores) after start-up; start-up to the first trial; scheduling gaps
  peer         the same search (the sweep's sampler and seed, same budget, no early stopping, the sweep's
               objective) as a plain Optuna study in one process with n_jobs = cores, against `ganpipe sweep`
               (--peer-case: the space; quick.yaml's by default)
  search       per space of SEARCH_CASES, S sweep seeds each: searches with ASHA (TPE by default; any sampler
               of search.sampler, --methods) vs random search without early stopping vs the space's default
               config trained for the same budget in training steps. Every "best" is the sweep's objective
               (ganpipe.objective: the `objective` each evaluation reports, lower is better; mode_tv on the
               point datasets): the best so far against steps spent, the steps each method needs to reach the
               space's target, each trial's best objective, and for random search the expected best of n
               trials (Lucic et al. 2018, ganpipe.report.estimators) with a bootstrap interval

    python benchmarks/sweeps.py --only search --datasets grid25-broad --seeds 3 \
        --out docs/benchmarks-search-broad.json
    python benchmarks/sweeps.py --report --out docs/benchmarks-search-broad.json \
        --png docs/images/search-broad.png          (tables and curves of a finished run)

Sections 4 and 5 of docs/benchmarks.md were measured before the objective existed (their JSON files rank
by `best_fid`); --report still reads them and says so.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from ganpipe.config.rules import STARTUP_SAMPLERS  # those with random start-up trials

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "sweeps" / "quick.yaml"
CORES = os.cpu_count() or 1
WALL_FILE = "benchmark-wall.json"  # a sweep's wall time so far, over the runs that continued it

# Stacked-digits at CPU size: sweeps/stability.yaml ships for GPUs (resources.gpu 0.25, 20,000 steps)
STABILITY_ON_CPU = ["resources.gpu=0", "resources.cpu=1", "search.max_concurrent=2"]

# A target: an evaluation reaches it when its objective is at most `objective_max` and it covers at least
# `modes_min` modes (and, where given, has fid <= `fid_max`); `text` says it in the objective's terms, `papers` in the published protocol's
# (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018: modes covered, % high-quality samples, KL).
#   mode_tv <= t implies >= 1 - t of the samples within 3 std of a mode (off-mode mass counts fully in the
#   total variation). On ring8 it also implies 8/8 modes (a missing mode costs >= 0.125 - 0.008); on grid25 a
#   missing mode costs only ~0.03, so the mode count is asked for besides.
#   [fid, diversity] (stability.yaml): objective <= 0.01 + 0.01 x 100 / 101 is exactly "diversity >= 0.99
#   (>= 990 of 1000 modes) and fid <= 100" (ganpipe.objective's lexicographic rule)
TARGETS = {
    "ring8": {"objective_max": 0.05, "modes_min": 8, "text": "mode_tv <= 0.05 (which implies 8/8 modes)",
              "papers": "8/8 modes, >= 95 % high-quality samples (PacGAN's best row: 8/8, 98 %)"},
    # section 4's grid25 target (25/25 modes, >= 80 % high-quality), with balance counted too
    "grid25": {"objective_max": 0.20, "modes_min": 25, "text": "mode_tv <= 0.20 and 25/25 modes",
               "papers": "25/25 modes, >= 80 % high-quality samples (PacGAN's best row: 23.8/25 modes, 91 %; "
                         "mode_tv's floor at 2,500 samples: 0.045)"},
    # digits.yaml ranks by [fid, diversity] (diversity: k-NN coverage), which has no mode count to aim at
    "digits": {"objective_max": math.inf, "fid_max": 30.0, "modes_min": 10, "text": "10/10 classes and fid <= 30",
               "papers": "every class generated, fid <= 30 on the digits classifier's features"},
    "stacked": {"objective_max": 0.01 + 0.01 * 100 / 101, "modes_min": 990,
                "text": "objective <= 0.0199: diversity >= 0.99 and fid <= 100",
                "papers": ">= 990/1000 modes (PacGAN's best rows: 1000) and fid <= 100 on the digits "
                          "classifier's features (real data: 4.9; 20 % pixel noise on real data: 320)"},
}

# space -> the sweep file and overrides it comes from; the budget in training steps (random search's
# `trials` x `steps`, the same for every method); evaluation interval; ASHA's grace period and reduction
# factor (the searches with ASHA run trials of up to `steps` until the budget is spent); TPE's random
# start-up trials; the target (TARGETS)
SEARCH_CASES = {
    # issue 21: broad spaces with no default known to be good, where a search should pay
    # 24,000-step trials: the best settings known reach the grid25 target at 22,000 steps (section 9b); ASHA's
    # first rung at 8,000: random search's trials ranked by then agree with their final ranks (section 9)
    "grid25-broad": {"sweep": ROOT / "sweeps" / "grid25-broad.yaml", "sets": [], "trials": 32, "steps": 24000,
                     "every": 1000, "grace": 8000, "reduction": 2, "startup": 8, "target": "grid25"},
    "stacked-broad": {"sweep": ROOT / "sweeps" / "stability.yaml", "sets": STABILITY_ON_CPU, "trials": 32,
                      "steps": 2000, "every": 500, "grace": 500, "reduction": 2, "startup": 8, "target": "stacked"},
    # sections 4 and 5: spaces centred on a known-good default (quick.yaml, digits.yaml)
    "ring8": {"sweep": QUICK, "sets": [], "trials": 8, "steps": 8000, "every": 500, "grace": 1000,
              "reduction": 2, "startup": 8, "target": "ring8"},
    "grid25": {"sweep": QUICK, "sets": ["data=grid25"], "trials": 8, "steps": 8000, "every": 500, "grace": 1000,
               "reduction": 2, "startup": 8, "target": "grid25"},
    # grid25 with trials long enough to reach its target (the default config needs 16,000-22,000 steps)
    "grid25-long": {"sweep": QUICK, "sets": ["data=grid25"], "trials": 8, "steps": 16000, "every": 1000,
                    "grace": 2000, "reduction": 2, "startup": 8, "target": "grid25"},
    "digits": {"sweep": ROOT / "sweeps" / "digits.yaml", "sets": [], "trials": 8,
               "steps": 2000, "every": 250, "grace": 500, "reduction": 2, "startup": 6, "target": "digits"},
}
BROAD = ("grid25-broad", "stacked-broad")
SAMPLERS = ("tpe", "tpe-group", "random", "cmaes", "gp")  # search.sampler's choices
# a method: "SAMPLER+asha" (the sampler with ASHA, as many trials as the budget allows; "tpe4+asha": with 4
# random start-up trials instead of the case's share; "tpe-short+asha": its start-up trials trained only to
# ASHA's first rung, "tpe-short2+asha" to its second), "random" (random search, no early stopping, `trials`
# trials), "default" (the space's first values, one run of the budget)
DEFAULT_METHODS = ("tpe+asha", "random", "default")
CURVE_COLUMNS = ["steps_spent", "best_objective", "fid", "modes", "reached"]  # one point of a curve
# what a stored curve keeps: read as a step function it is the whole curve (one point per evaluation was half
# of a full-size search file, which grew by 86 KB per method and seed towards 2 MB, too big to track in git)
CURVE_POINTS = "the first evaluation, each one that changes the best so far or reaches the target, the last"


def reached(target: dict, row) -> bool:
    """Whether one evaluation (a Tune result row) meets the target."""
    return bool(row["objective"] <= target["objective_max"] and row["modes"] >= target["modes_min"]
                and row["fid"] <= target.get("fid_max", math.inf))


def run_sweep(folder: Path, sets: list[str], sweep: Path = QUICK, stop_at_steps: int | None = None
              ) -> tuple[float, float, list]:
    """Run `ganpipe sweep SWEEP` in `folder`; (wall seconds, start time, per-trial Tune dataframes).

    stop_at_steps: interrupt the sweep (SIGINT, as Ctrl-C: it stops its trials and keeps their results)
    once its trials have trained that many steps in all, read from the results Tune keeps beside each
    trial's checkpoints; what ran on until then is in the dataframes, and the curves do not count it.

    A folder that holds a sweep which did not end (this script was stopped: a search at full size takes
    longer than a working session) is continued with `ganpipe sweep --resume`, the same --set; the wall time
    is the sum of the runs, kept in WALL_FILE as it goes. A folder whose sweep ended is only read."""
    from ray.tune import ExperimentAnalysis

    wall_file = folder / WALL_FILE
    before = json.loads(wall_file.read_text()) if wall_file.exists() else {"wall_s": 0.0, "runs": 0}
    if not before.get("ended"):
        cmd = [sys.executable, "-m", "ganpipe.cli", "sweep", str(sweep), "--set", "promote.enabled=false"]
        for s in sets:
            cmd += ["--set", s]
        if (folder / "ray_results").is_dir():
            from ray.tune import Tuner

            if any(Tuner.can_restore(str(p)) for p in (folder / "ray_results").iterdir() if p.is_dir()):
                cmd.append("--resume")
            else:  # stopped before Tune saved anything: start again
                shutil.rmtree(folder / "ray_results")
        start = time.time()

        def keep_wall(**more) -> float:
            wall = before["wall_s"] + time.time() - start
            wall_file.write_text(json.dumps({"wall_s": wall, "runs": before["runs"] + 1, **more}))
            return wall

        with open(folder / "sweep.log", "a") as log:
            proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
            checked, at_budget = time.time(), False
            while proc.poll() is None:
                time.sleep(0.5)  # the wall time is the command's to within this
                if time.time() - checked >= 5:  # reading every trial's results costs
                    checked = time.time()
                    keep_wall()
                    if stop_at_steps is not None and steps_trained(folder / "ray_results") >= stop_at_steps:
                        proc.send_signal(signal.SIGINT)
                        at_budget = True
                        proc.wait()
        # only this script's own stop at the budget ends the method; a Ctrl-C from outside (exit 130 too)
        # leaves it to be continued by the next run
        stopped = at_budget and proc.returncode == 130
        if proc.returncode not in (0, 1) and not stopped:  # 1: every trial failed (diverged), still an outcome
            keep_wall()
            raise RuntimeError(f"ganpipe sweep exited {proc.returncode}:\n{(folder / 'sweep.log').read_text()[-3000:]}")
        wall = keep_wall(ended=True, start=start)
    else:
        wall, start = before["wall_s"], before["start"]
    (exp,) = [p for p in (folder / "ray_results").iterdir() if p.is_dir()]
    return wall, start, list(ExperimentAnalysis(str(exp)).trial_dataframes.values())


def method_folder(seed_folder: Path, method: str, trials: int, steps: int) -> Path:
    """Where a method's sweep of one budget runs, under its space and seed's folder (work/SPACE-SEED)."""
    return seed_folder / f"{method}-{trials}x{steps}"


def peek(work: Path, name: str, seed: int, method: str, scale: float = 1.0, trials: int | None = None,
         steps: int | None = None) -> dict | None:
    """A search in `work` as it stands, running or stopped part-way (None: never started): its curve's end
    from the results Tune writes beside each trial. A first hit is final once made; the rest may still move."""
    case = SEARCH_CASES[name]
    trials, steps = budget_of(case, scale, trials, steps)
    results = method_folder(work / f"{name}-{seed}", method, trials, steps) / "ray_results"
    dfs = [trial_results(path) for path in sorted(results.glob("*/*/result.json"))]
    dfs = [df for df in dfs if not df.empty]
    if not dfs:
        return None
    target = TARGETS[case["target"]]
    records = trial_records(dfs, target)
    found = summarise(best_curve(dfs, target, trials * steps), records)
    return {"space": name, "seed": seed, "method": method, "budget": trials * steps,
            **{k: v for k, v in found.items() if k != "curve"},
            "trials_reaching": target_hits(records)["trials_reaching"]}


def trial_results(path: Path):
    """One trial's results so far (its result.json) as the dataframe ExperimentAnalysis gives for a finished
    sweep."""
    import pandas as pd

    return pd.json_normalize(result_lines(path), sep="/")


def steps_trained(results: Path) -> int:
    """Steps trained so far by all trials of a running sweep: each trial's last reported step, from the
    result.json Tune writes in the trial's folder (synced with every checkpoint)."""
    return sum(max((int(r.get("step", 0)) for r in result_lines(path)), default=0)
               for path in results.glob("*/*/result.json"))


def result_lines(path: Path) -> list[dict]:
    """The results in one trial's result.json (one JSON object per line), a line being written skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


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


def best_curve(dfs, target: dict, budget: int | None = None) -> list[list]:
    """[steps spent so far, best objective so far, that evaluation's fid and modes, target reached so far]
    (CURVE_COLUMNS) in time order, up to `budget` steps spent (what came after does not count)."""
    events = []
    for df in dfs:
        prev = 0
        for _, row in df.iterrows():
            events.append((float(row["timestamp"]), int(row["step"]) - prev, row))
            prev = int(row["step"])
    events.sort(key=lambda e: e[0])
    spent, best, curve, hit = 0, None, [], False
    for _, steps, row in events:
        if budget is not None and spent + steps > budget:
            break
        spent += steps
        if best is None or row["objective"] < best["objective"]:
            best = row
        hit = hit or reached(target, row)
        curve.append([spent, float(best["objective"]), float(best["fid"]), int(best["modes"]), hit])
    return curve


def change_points(curve: list[list]) -> list[list]:
    """The points of `curve` (best_curve's) that CURVE_POINTS keeps. Between two of them nothing but the steps
    spent moves, so a reader taking the last point at or before a step (the tables at 25 / 50 / 75 / 100 %,
    the drawn steps, the first hit) reads the same as from the whole curve."""
    return [p for i, p in enumerate(curve) if i in (0, len(curve) - 1) or p[1:] != curve[i - 1][1:]]


def every_of(case: dict, scale: float = 1.0) -> int:
    return max(50, round(case["every"] * min(scale * 10, 1.0)))  # CI's tiny runs evaluate more often


def budget_of(case: dict, scale: float = 1.0, trials: int | None = None, steps: int | None = None
              ) -> tuple[int, int]:
    """(random search's trials, steps per trial): the case's, or those given; `scale` shrinks both (CI runs tiny)."""
    every = every_of(case, scale)
    trials = max(2, round((trials or case["trials"]) * scale))
    steps = max(2 * every, round((steps or case["steps"]) * scale / every) * every)
    return trials, steps


def asha_sets(case: dict, trials: int, steps: int, every: int) -> list[str]:
    """ASHA's settings for a search: the case's grace period (at most half a trial, whole evaluation
    intervals) and reduction factor, and enough trials to spend the budget however early ASHA stops them
    (the sweep is interrupted once the budget is spent)."""
    return [f"search.scheduler.name=asha", f"search.scheduler.grace_period={asha_grace(case, steps, every)}",
            f"search.scheduler.reduction_factor={case['reduction']}",
            f"search.num_samples={trials * 4}"]


def asha_grace(case: dict, steps: int, every: int) -> int:
    """The case's grace period, at most half a trial, in whole evaluation intervals."""
    return max(every, min(case["grace"], steps // every // 2 * every))


def asha_rungs(case: dict, steps: int, every: int) -> list[int]:
    """The steps at which ASHA compares trials: the grace period times the reduction factor's powers."""
    rung, rungs = asha_grace(case, steps, every), []
    while rung < steps:
        rungs.append(rung)
        rung *= case["reduction"]
    return rungs


class Method(NamedTuple):
    sampler: str
    startup: int | None  # random start-up trials; None: the case's share
    short: int  # the start-up trials train only to this ASHA rung (search.startup_steps; 1: the first); 0: whole
    asha: bool


def parse_method(method: str) -> Method:
    """'SAMPLER[N][-short[R]][+asha]': "tpe4+asha" is TPE whose model guides from the 5th trial on, with ASHA;
    "tpe-short+asha" trains its start-up trials only to ASHA's first rung, "tpe-short2+asha" to its second."""
    found = re.fullmatch(r"(?P<sampler>[a-z]+(?:-group)?)(?P<startup>\d+)?(?P<short>-short(?P<rung>[1-9])?)?"
                         r"(?P<asha>\+asha)?", method)
    parsed = found and Method(found["sampler"], int(found["startup"]) if found["startup"] else None,
                              int(found["rung"] or 1) if found["short"] else 0, bool(found["asha"]))
    if (not parsed or parsed.sampler not in SAMPLERS or parsed.startup == 0  # 0 would be Optuna's default, 10
            or ((parsed.startup or parsed.short) and parsed.sampler not in STARTUP_SAMPLERS)
            or (parsed.short and not parsed.asha)):  # -short stops the start-up at one of ASHA's rungs
        raise SystemExit(f"unknown method {method!r}: SAMPLER[N][-short[R]]+asha, SAMPLER, random or default; "
                         f"samplers: {', '.join(SAMPLERS)}; N >= 1 (random start-up trials) and -short[R] (start-up "
                         f"trials only to ASHA's R-th rung, 1 to 9, the first if no R; with +asha) only for "
                         f"{', '.join(STARTUP_SAMPLERS)}")
    return parsed


def method_sets(method: str, case: dict, trials: int, steps: int, every: int) -> list[str]:
    if method == "random":
        return ["search.sampler=random", "search.scheduler.name=none", f"search.num_samples={trials}"]
    sampler, startup, short, asha = parse_method(method)
    if startup is None:  # the model-based samplers' random start-up trials: the case's share of its trials
        startup = max(2, round(case["startup"] * trials / case["trials"]))
    startup = [f"search.startup_trials={startup}"] if sampler in STARTUP_SAMPLERS else []
    if short:  # to one of ASHA's rungs, where its cuts are made
        rungs = asha_rungs(case, steps, every)
        if short > len(rungs):
            raise SystemExit(f"method {method!r}: ASHA has {len(rungs)} rung(s) in trials of {steps} steps "
                             f"(at {', '.join(map(str, rungs))}), no rung {short}")
        startup.append(f"search.startup_steps={rungs[short - 1]}")
    return [f"search.sampler={sampler}", *startup,
            *(asha_sets(case, trials, steps, every) if asha else
              ["search.scheduler.name=none", f"search.num_samples={trials}"])]


def search(folder: Path, seed: int, case: dict, scale: float = 1.0, methods=DEFAULT_METHODS,
           done: dict | None = None, trials: int | None = None, steps: int | None = None, measured=None) -> dict:
    """The methods at an equal budget of trials x steps training steps; `done`: this seed's earlier
    results, whose methods are kept where their budget is this one; `measured(out)` after each method."""
    trials, steps = budget_of(case, scale, trials, steps)
    budget, every = trials * steps, every_of(case, scale)
    target = TARGETS[case["target"]]
    common = case["sets"] + [f"search.seed={seed}", f"train.steps={steps}", f"eval.every={every}"]
    out = {"budget": {"trials": trials, "steps_per_trial": steps, "steps": budget, "every": every}}
    for method in methods:
        old = (done or {}).get(method)
        if old and (done or {}).get("budget") == out["budget"] and "best_objective" in old:
            out[method] = old
            continue
        sub = method_folder(folder, method, trials, steps)  # with --work, a later run of this budget continues it
        sub.mkdir(parents=True, exist_ok=True)
        if method == "default":  # the default config (first choice / midpoint) trained once for the whole budget,
            # on one thread like every trial of the other methods: alone, it would take the idle CPU as a second
            # thread (resources.share_idle_cpus), which changes no step; on a loaded 2-core machine it trained
            # grid25-broad's default at 3.6 steps/s on two threads, and at 260 on one a few minutes later
            from ganpipe.config import first_values, load_sweep

            sweep = load_sweep(case["sweep"], case["sets"])
            defaults = [f"{k}={v}" for k, v in first_values(sweep.space, sweep.trial).items()]
            wall, _, dfs = run_sweep(sub, case["sets"] + defaults + [
                "search.num_samples=1", "search.scheduler.name=none", "search.sampler=random",
                f"train.steps={budget}", f"eval.every={max(every, steps // 4)}", f"train.seed={seed}",
                "resources.share_idle_cpus=false"], case["sweep"])
        else:
            # ASHA stops most trials early, so a search with it runs more of them; it is interrupted once the
            # budget is spent, and steps past the budget do not count
            wall, _, dfs = run_sweep(sub, common + method_sets(method, case, trials, steps, every), case["sweep"],
                                     stop_at_steps=budget if method.endswith("+asha") else None)
        records = trial_records(dfs, target)
        out[method] = {**summarise(best_curve(dfs, target, budget), records), "wall_s": wall,
                       "trial_records": records}
        if method == "random":
            out[method]["expected_best"] = expected_best_vs_budget(records, steps)
            out[method]["rung_agreement"] = rung_agreement(records, asha_rungs(case, steps, every))
        print("search", method, json.dumps({k: v for k, v in out[method].items()
                                             if k not in ("curve", "trial_records", "expected_best")}), flush=True)
        if measured:
            measured(out)
    return out


def summarise(curve: list, records: list[dict]) -> dict:
    """The curve's end: steps spent within the budget, the best objective and its evaluation's fid and
    modes, the steps at which the target was first met (None: never), and the trials that ran."""
    last = curve[-1] if curve else [0, math.inf, math.nan, 0, False]
    return {"steps_spent": last[0], "best_objective": last[1], "fid_at_best": last[2], "modes_at_best": last[3],
            "steps_to_target": next((c[0] for c in curve if c[4]), None), "trials": len(records),
            "steps_trained": sum(r["steps"] for r in records),  # with what ran past the budget
            "train_core_s": sum(r["train_core_s"] for r in records), "curve": change_points(curve)}


def trial_records(dfs, target: dict) -> list[dict]:
    """Per trial, in start order: its searched values, the steps it trained (fewer than the trial length:
    ASHA stopped it, or the sweep was interrupted at the budget), its best objective (the lowest, earliest
    on a tie) with that evaluation's fid, modes and mode_tv; its lowest fid anywhere (what the old rule
    took); the first of its own steps at which it met the target (None: never); the core-seconds it
    trained. Unlike the curve, this counts steps a trial trained after its method's budget was spent. The
    searched values are the `config/...` columns Tune puts in every result."""
    records = []
    for df in sorted((d for d in dfs if not d.empty), key=lambda d: trial_times(d)[0]):
        best = df.loc[df["objective"].idxmin()] if df["objective"].notna().any() else df.iloc[0]
        hit = next((int(row["step"]) for _, row in df.iterrows() if reached(target, row)), None)
        first = df.iloc[0]
        records.append({
            "config": {c.removeprefix("config/"): first[c].item() if hasattr(first[c], "item") else first[c]
                       for c in df.columns if c.startswith("config/")},
            "steps": int(df["step"].iloc[-1]), "best_objective": float(best["objective"]),
            "best_step": int(best["step"]), "fid_at_best": float(best["fid"]), "modes_at_best": int(best["modes"]),
            **({"mode_tv_at_best": float(best["mode_tv"])} if "mode_tv" in df else {}),
            "lowest_fid": float(df["fid"].min()), "reached_at_step": hit,
            "train_core_s": round(trial_times(df)[2], 2),
            # every evaluation: [step, objective, modes], for asking later what an early rung could have told
            "evaluations": [[int(r["step"]), round(float(r["objective"]), 6), int(r["modes"])]
                            for _, r in df.iterrows() if r["objective"] == r["objective"]]})
    return records


def rung_agreement(records: list[dict], rungs: list[int], keep: float = 0.5) -> list[dict]:
    """What ASHA would have known at each rung, from trials that trained to the end (random search's): the
    rank correlation (Spearman) between a trial's best objective so far at the rung and its final best, and
    of the final best quarter how many a cut at the rung keeping `keep` of the trials would have kept. Early
    stopping pays only where the first is high; grid25's modes appear after thousands of steps."""
    from scipy.stats import spearmanr

    full = [r for r in records if r.get("evaluations")]
    if len(full) < 4:
        return []
    final = [r["best_objective"] for r in full]
    top = set(sorted(range(len(full)), key=lambda i: final[i])[:max(1, len(full) // 4)])
    rows = []
    for rung in rungs:
        early = [min((e[1] for e in r["evaluations"] if e[0] <= rung), default=math.inf) for r in full]
        kept = set(sorted(range(len(full)), key=lambda i: early[i])[:max(1, round(len(full) * keep))])
        rho = spearmanr(early, final).statistic
        rows.append({"rung": rung, "spearman": None if rho != rho else round(float(rho), 3),
                     "best_quarter_kept": len(top & kept), "best_quarter": len(top)})
    return rows


def expected_best_vs_budget(records: list[dict], steps: int, draws: int = 500) -> dict:
    """Random search's trials are independent draws, so Lucic et al.'s estimator applies
    (ganpipe.report.estimators): the expected best objective of n trials, n = 1..m, with a 95 % bootstrap
    interval; and the chance that n trials reach the target (the same estimator on 0/1: the expected "best"
    of n not-reached flags is the chance that none of them reached it). Budget of n trials: n x steps."""
    from ganpipe.report.estimators import bootstrap_curve, expected_best_curve

    values = [r["best_objective"] for r in records]
    finite = [v if math.isfinite(v) else 1e9 for v in values]  # a diverged trial is the worst draw
    low, high = bootstrap_curve(finite, draws=draws)
    missed = [0.0 if r["reached_at_step"] is not None else 1.0 for r in records]
    return {"budget_steps": [n * steps for n in range(1, len(values) + 1)],
            "expected_best": [round(float(x), 6) for x in expected_best_curve(finite)],
            "low": [round(float(x), 6) for x in low], "high": [round(float(x), 6) for x in high],
            "p_reached": [round(max(0.0, 1 - float(x)), 4) for x in expected_best_curve(missed)]}


def target_hits(records: list[dict]) -> dict:
    """How many of a method's trials reached the target, per step and core-second trained. A search's steps
    to its first hit is a single random event, and TPE's random start-up trials are the same draws as random
    search's first ones; counting every hit says whether a sampler keeps finding settings that get there."""
    hits = sum(r["reached_at_step"] is not None for r in records)
    steps, core_s = sum(r["steps"] for r in records), sum(r["train_core_s"] for r in records)
    return {"trials": len(records), "trials_reaching": hits, "steps": steps, "core_s": round(core_s, 1),
            "steps_per_hit": round(steps / hits) if hits else None,
            "core_s_per_hit": round(core_s / hits, 1) if hits else None}


def derive(data: dict, case: dict) -> None:
    """What is computed from a space's measured runs (no training): random search's steps to the target over
    resamples of its trials, per seed; every method's hits per step; and the summary across seeds. Curves
    stored whole (before CURVE_POINTS) are thinned to the points it keeps."""
    data["curve_points"] = CURVE_POINTS
    for res in data["seeds"].values():
        for method in methods_of(res):
            if "curve" in res[method]:  # stored before the curves were thinned: thinned now
                res[method]["curve"] = change_points(res[method]["curve"])
            if res[method].get("trial_records"):
                res[method]["target_hits"] = target_hits(res[method]["trial_records"])
        random = res.get("random")
        if random and random.get("trial_records"):
            budget = res["budget"]
            random["steps_to_target_resampled"] = random_steps_to_target(
                random["trial_records"], case, budget["steps_per_trial"], budget["steps"])
    methods = {m for res in data["seeds"].values() for m in methods_of(res)}
    data["across_seeds"] = across_seeds(data, sorted(methods), case)


def random_steps_to_target(records: list[dict], case: dict, steps: int, budget: int) -> dict:
    """Random search's steps to the target over resamples of its trials, run as many at a time as the
    sweep runs them (ganpipe.report.estimators.steps_to_first_hit): how lucky one search's count was."""
    from ganpipe.config import load_sweep
    from ganpipe.report.estimators import steps_to_first_hit

    slots = load_sweep(case["sweep"], case["sets"]).search.max_concurrent
    return steps_to_first_hit([r["reached_at_step"] for r in records], steps, slots=slots, budget=budget)


def across_seeds(data: dict, methods, case: dict) -> dict:
    """Per method: steps to the target and the best objective at the budget in each seed and their median,
    and its trials reaching the target (target_hits, all seeds); each search's steps to the target over random
    search's, per seed and the median (the goal: <= 1/3), and its steps per trial reaching the target over
    random search's on the seeds both ran, per seed and pooled;
    random search's expected best and chance of the target vs budget, its trials pooled over the seeds."""
    seeds = sorted(data["seeds"], key=int)
    out: dict = {}
    for method in methods:
        runs = [data["seeds"][s][method] for s in seeds if method in data["seeds"][s]]
        if not runs:
            continue
        hits = [r["steps_to_target"] for r in runs]
        bests = [r["best_objective"] for r in runs]
        out[method] = {"seeds": [s for s in seeds if method in data["seeds"][s]], "steps_to_target": hits,
                       "median_steps_to_target": median_or_none(hits), "best_objective": bests,
                       "median_best_objective": statistics.median(bests),
                       "target_hits": target_hits([t for r in runs for t in r.get("trial_records", [])])}
        if method != "random":  # the default config too: issue 21 compares it at the same budget
            ratios, paired = [], []
            for s in seeds:
                res = data["seeds"][s]
                if method in res and "random" in res:
                    paired.append(s)
                    ratios.append(hit_ratio(res[method]["steps_to_target"], res["random"]["steps_to_target"],
                                            res["budget"]["steps"]))
            out[method]["over_random"] = ratios
            out[method]["paired_seeds"] = paired  # the seeds of the ratios: random search may lack one
            out[method]["median_over_random"] = median_or_none(ratios)
            # steps per trial reaching the target over random search's, on the seeds both ran: per seed, pooled
            def per_hit_ratio(over: list[str]):
                mine, theirs = (target_hits([t for s in over for t in data["seeds"][s][m].get("trial_records", [])])
                                ["steps_per_hit"] for m in (method, "random"))
                return round(mine / theirs, 4) if mine and theirs else None

            out[method]["steps_per_hit_over_random"] = [per_hit_ratio([s]) for s in paired]
            out[method]["pooled_steps_per_hit_over_random"] = per_hit_ratio(paired)
    pooled = [r for s in seeds if "random" in data["seeds"][s] for r in data["seeds"][s]["random"]["trial_records"]]
    if pooled:
        steps = data["seeds"][seeds[0]]["budget"]["steps_per_trial"]
        budget = data["seeds"][seeds[0]]["budget"]["steps"]
        out["random_pooled"] = {"trials": len(pooled), **expected_best_vs_budget(pooled, steps),
                                "steps_to_target": random_steps_to_target(pooled, case, steps, budget)}
        # each search's median steps to the target over random search's resampled median (None: a miss)
        expected = out["random_pooled"]["steps_to_target"]["median"]
        for method, a in out.items():
            if method not in ("random", "random_pooled"):
                med = a["median_steps_to_target"]
                a["median_over_random_resampled"] = (round(med / expected, 4) if isinstance(med, (int, float))
                                                     and expected else None)
    return out


def hit_ratio(search_hit, random_hit, budget: int):
    """A search's steps to the target over random search's; where one never got there within the budget,
    a bound: "<= x" (random search missed: at most x) or ">= x" (the search missed), None if both missed."""
    if search_hit is not None and random_hit is not None:
        return round(search_hit / random_hit, 4)
    if search_hit is not None:
        return f"<= {search_hit / budget:.4f}"
    if random_hit is not None:
        return f">= {budget / random_hit:.4f}"
    return None


def median_or_none(values: list):
    """The median, a missed target (None) counted as the worst and a bound as its side; with an even count
    and a miss or a bound among the middle two, the better of them."""
    def order(v):
        if v is None:
            return math.inf
        if isinstance(v, str):  # "<= x" just below x, ">= x" just above
            return float(v.split()[1]) + (1e-9 if v.startswith(">=") else -1e-9)
        return v

    if not values:
        return None
    ordered, half = sorted(values, key=order), len(values) // 2
    if len(ordered) % 2 or not all(isinstance(v, (int, float)) for v in ordered[half - 1:half + 1]):
        return ordered[(len(ordered) - 1) // 2]
    return (ordered[half - 1] + ordered[half]) / 2


PEER_VARIANTS = ("optuna_n_jobs", "ganpipe_sweep")


def peer(folder: Path, case: dict, trials: int, steps: int, repeats: int = 1, before: dict | None = None,
         measured=None) -> dict:
    """Plain Optuna, one process, n_jobs = cores, the same sampler, seed, space, budget and objective, no early
    stopping, against `ganpipe sweep`; interleaved until each has run `repeats` times. `before`: the runs an
    earlier command measured at this size (kept, and continued in their order: at the issue's size one repeat
    takes about 2 h on 2 cores, so 3 repeats span working sessions); `measured(out)` after each run."""
    runs = {name: list((before or {}).get(name, {}).get("runs", [])) for name in PEER_VARIANTS}
    order = alternating(repeats, PEER_VARIANTS)
    out = peer_summary(runs)
    for i in range(sum(map(len, runs.values())), len(order)):
        name, sub = order[i], folder / f"{order[i]}-{i}"
        sub.mkdir()
        run = plain_optuna if name == "optuna_n_jobs" else ganpipe_sweep
        runs[name].append(found := run(sub, case, trials, steps))
        print("peer", name, json.dumps(found), flush=True)
        out = peer_summary(runs)
        if measured:
            measured(out)
    return out


def peer_summary(runs: dict[str, list]) -> dict:
    out = {name: summary(found) for name, found in runs.items() if found}
    out["wall_ratio_per_repeat"] = [g["wall_s"] / o["wall_s"]
                                    for g, o in zip(runs["ganpipe_sweep"], runs["optuna_n_jobs"])]
    return out


def peer_sets(case: dict, trials: int, steps: int) -> list[str]:
    return case["sets"] + [f"train.steps={steps}", f"search.num_samples={trials}", f"eval.every={max(1, steps // 8)}",
                           "search.scheduler.name=none", "search.seed=0"]


def plain_optuna(folder: Path, case: dict, trials: int, steps: int) -> dict:
    """The sweep's own sampler (ganpipe.tune.search.make_sampler) in an Optuna study; each trial's value is
    its best objective, as ganpipe's searcher learns it."""
    import optuna
    import torch

    from ganpipe.config import load_sweep, resolve_trial, suggest
    from ganpipe.objective import OBJECTIVE
    from ganpipe.train.loop import Trainer
    from ganpipe.tune.search import make_sampler

    sweep = load_sweep(case["sweep"], peer_sets(case, trials, steps))
    torch.set_num_threads(1)

    def objective(trial):
        cfg = resolve_trial(sweep, suggest(trial, sweep.space, sweep.trial))
        result = Trainer(cfg, objectives=sweep.search.objectives).train()
        return result.best[OBJECTIVE] if result.status == "finished" else float("inf")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(sweep))
    start = time.time()
    study.optimize(objective, n_trials=trials, n_jobs=CORES)
    return {"wall_s": time.time() - start, "best_objective": study.best_value}


def ganpipe_sweep(folder: Path, case: dict, trials: int, steps: int) -> dict:
    """The whole command's wall time, and its start-up (to the first trial's start), which plain Optuna's
    wall time, taken around study.optimize, does not include."""
    wall, t0, dfs = run_sweep(folder, peer_sets(case, trials, steps), case["sweep"])
    first = min(trial_times(df)[0] for df in dfs)
    return {"wall_s": wall, "startup_s": first - t0,
            "best_objective": min(float(df["objective"].min()) for df in dfs if not df.empty)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="search: seeds 0..S-1")
    parser.add_argument("--seed-list", type=int, nargs="+", help="search: these seeds instead of 0..S-1")
    parser.add_argument("--trials", type=int, default=8, help="utilisation and peer: trials")
    parser.add_argument("--steps", type=int, default=8000, help="utilisation and peer: steps per trial")
    parser.add_argument("--repeats", type=int, default=1,
                        help="utilisation and peer: runs of each variant; peer: in all, counting those already in "
                             "--out at the same --peer-case, --trials and --steps (the same command continues)")
    parser.add_argument("--only", choices=["utilisation", "peer", "search"], action="append")
    parser.add_argument("--datasets", nargs="+", choices=list(SEARCH_CASES), default=["ring8", "grid25", "digits"],
                        help="search: the spaces; grid25-long, grid25-broad and stacked-broad take hours on 2 cores, "
                             "so only when named")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="search: SAMPLER[N][-short[R]]+asha (SAMPLER: " + ", ".join(SAMPLERS)
                             + "; N: random start-up trials, e.g. tpe4+asha; -short: start-up trials only to ASHA's "
                             "first rung, -shortR to its R-th), random, default")
    parser.add_argument("--search-trials", type=int, help="search: random search's trials (the budget), "
                                                          "instead of the space's")
    parser.add_argument("--search-steps", type=int, help="search: steps per trial, instead of the space's")
    parser.add_argument("--peer-case", choices=list(SEARCH_CASES), default="ring8",
                        help="peer: the space (ring8: quick.yaml's)")
    parser.add_argument("--scale", type=float, default=1.0, help="search: multiply the budget (CI runs tiny)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-sweeps.json"))
    parser.add_argument("--work", type=Path,
                        help="search: a folder kept for the sweeps; the same command run again continues a search "
                             "that was stopped where it stopped (full sizes take longer than a working day on 2 cores)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: recompute what is derived from the runs in --out (saved there), print its "
                             "utilisation and search tables and draw their curves in --png")
    parser.add_argument("--png", default=str(ROOT / "docs" / "images" / "search-curves.png"),
                        help="--report: where the search curves are drawn")
    parser.add_argument("--peek", action="store_true",
                        help="train nothing, write nothing: the searches in --work as they stand (running or stopped "
                             "part-way): steps spent, the first hit of the target, the best objective")
    args = parser.parse_args()
    check_methods(args.methods, args.datasets, args.scale, args.search_trials, args.search_steps)
    if args.peek:
        if not args.work:
            parser.error("--peek reads the searches in --work")
        for seed in seeds_of(args):
            for name in args.datasets:
                for method in dict.fromkeys(args.methods):
                    found = peek(args.work, name, seed, method, args.scale, args.search_trials, args.search_steps)
                    if found:
                        print(json.dumps(found), flush=True)
        return
    if args.report:
        if not Path(args.out).exists():
            parser.error(f"--report reads {args.out}, which does not exist")
        # Under the file's lock, so that a seed another process saves meanwhile is neither lost nor overwritten.
        results = update_locked(args.out, derive_searches)
        if "utilisation" in results:
            print(utilisation_report(results))
        if "search" in results:
            print(report(results, Path(args.png)))
        return
    parts = args.only or ["utilisation", "peer", "search"]
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    results["machine"] = {"cores": CORES}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        work = args.work.resolve() if args.work else tmp  # kept: the same command continues a stopped search
        work.mkdir(parents=True, exist_ok=True)
        if "utilisation" in parts:
            results["utilisation"] = utilisation_side_by_side(tmp, args.trials, args.steps, args.repeats)
            save(results, args.out)
        if "peer" in parts:
            (tmp / "p").mkdir()
            size = {"case": args.peer_case, "judged_by": "objective", "trials": args.trials, "steps": args.steps}
            old = results.get("peer", {})
            before = old if {k: old.get(k) for k in size} == size else None

            def measured_peer(out):  # saved after each run: a run stopped part-way keeps the repeats it finished
                results["peer"] = {**size, **out}
                save(results, args.out)

            peer(tmp / "p", SEARCH_CASES[args.peer_case], args.trials, args.steps, args.repeats, before, measured_peer)
        if "search" in parts:
            search_all(results, args, work)
    save(results, args.out, own_searches(args))


def check_methods(methods: list[str], names: list[str], scale: float, trials: int | None, steps: int | None) -> None:
    """A misspelt method, or a start-up to a rung that a space's trials lack, fails now, not hours in."""
    for method in set(methods) - {"random", "default"}:
        parse_method(method)
        for name in names:
            case = SEARCH_CASES[name]
            method_sets(method, case, *budget_of(case, scale, trials, steps), every_of(case, scale))


def own_searches(args) -> frozenset:
    """The (space, seed) searches this run writes; the rest of --out's searches are others'."""
    if args.only and "search" not in args.only:
        return frozenset()
    return frozenset((name, str(seed)) for seed in seeds_of(args) for name in args.datasets)


def seeds_of(args) -> list[int]:
    return args.seed_list if args.seed_list is not None else list(range(args.seeds))


def search_all(results: dict, args, tmp: Path) -> None:
    """Seed by seed (an interrupted run has every space at least once), saving after each; a seed's method
    measured before at the same budget under the objective is kept, not run again."""
    if any(v.get("judged_by") != "objective" for v in results.get("search", {}).values()):
        raise SystemExit(f"{args.out} holds search results ranked by the lowest fid (before the objective); "
                         "give another --out")
    results["search"] = {k: v for k, v in results.get("search", {}).items() if k in SEARCH_CASES}
    for name in args.datasets:
        case = SEARCH_CASES[name]
        entry = results["search"].setdefault(name, {"seeds": {}})
        entry.update({"judged_by": "objective", "sweep": str(case["sweep"].relative_to(ROOT)), "sets": case["sets"],
                      "target": TARGETS[case["target"]], "curve_columns": CURVE_COLUMNS})
    own = own_searches(args)
    for seed in seeds_of(args):
        for name in args.datasets:
            case = SEARCH_CASES[name]
            (tmp / f"{name}-{seed}").mkdir(exist_ok=True)
            done = results["search"][name]["seeds"].get(str(seed))

            def measured(res, name=name, seed=seed, done=done):  # a long run keeps every method it measured
                same = done if done and done.get("budget") == res["budget"] else {}  # others of this budget
                results["search"][name]["seeds"][str(seed)] = {**same, **res}
                save(results, args.out, own)

            measured(search(tmp / f"{name}-{seed}", seed, case, args.scale, args.methods, done,
                            args.search_trials, args.search_steps, measured))
            derive(results["search"][name], case)
            print("search", name, "seed", seed, json.dumps(results["search"][name]["across_seeds"].get(
                "random_pooled", {}).get("expected_best", [])[-1:]), flush=True)
            save(results, args.out, own)


LABELS = {"random": "random search", "default": "default config"}
# Matplotlib's ten, so that a space's methods (seven in grid25-broad's file: five searches, random search, the
# default config) each have their own: with six the default config drew in TPE + ASHA's blue, stars included
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:gray", "tab:olive", "tab:cyan")


def label(method: str) -> str:
    if method in LABELS:
        return LABELS[method]
    sampler, startup, short, asha = parse_method(method)
    name = {"tpe": "TPE", "tpe-group": "TPE", "cmaes": "CMA-ES", "gp": "GP", "random": "random"}[sampler]
    notes = ["group"] if sampler == "tpe-group" else []
    if startup is not None or short:
        rung = {0: "", 1: " to the first rung", 2: " to the second rung"}.get(short, f" to rung {short}")
        notes.append(f"{startup or ''} start-up{rung}".strip())
    return name + (f" ({', '.join(notes)})" if notes else "") + (" + ASHA" if asha else "")


def colour_of(method: str, methods: list[str]) -> str:
    """A method's colour in the figure: by its place among the space's methods, the same in every seed."""
    return COLOURS[methods.index(method) % len(COLOURS)]


def methods_of(res: dict) -> list[str]:
    order = {m: i for i, m in enumerate(DEFAULT_METHODS)}
    return sorted((m for m in res if m != "budget"), key=lambda m: (order.get(m, 1.5), m))


def report(results: dict, png: Path) -> str:
    """Markdown tables of the search results and their curves in `png`: the best objective so far against
    steps spent per method and seed, random search's expected best with its interval; the target dashed.
    A file from before the objective (section 4) holds best fids: the old report reads it."""
    if any(v.get("judged_by") != "objective" for v in results["search"].values()):
        return "(old judgement: every best is the lowest fid)\n" + report_old(results, png)
    search = results["search"]
    rows = ["| space | seed | method | trials | best objective at 25 / 50 / 75 / 100 % of the budget | "
            "fid, modes of that evaluation | steps to target | training core-s |", "|---|---|---|---|---|---|---|---|"]
    for name, data in search.items():
        for seed, res in sorted(data["seeds"].items(), key=lambda kv: int(kv[0])):
            budget = res["budget"]["steps"]
            for method in methods_of(res):
                r = res[method]
                points = []
                for frac in (0.25, 0.5, 0.75, 1.0):
                    upto = [p for p in r["curve"] if p[0] <= frac * budget]
                    points.append(f"{upto[-1][1]:.3g}" if upto else "—")
                hit = f"{r['steps_to_target']:,}" if r["steps_to_target"] else "—"
                rows.append(f"| {name} | {seed} | {label(method)} | {r['trials']} | {' / '.join(points)} "
                            f"| {r['fid_at_best']:.3g}, {r['modes_at_best']} | {hit} | {r['train_core_s']:.0f} |")
    save_figure(search_figure(search), png)
    text = "\n".join(rows)
    for name, data in search.items():
        across = data.get("across_seeds", {})
        text += f"\n\n{name}: steps to the target ({data['target']['text']}; {data['target']['papers']}), by seed:\n\n"
        every_seed = sorted(data["seeds"], key=int)
        text += ("| method | seeds | steps to target | median | over random search's | median |\n"
                 "|---|---|---|---|---|---|\n")
        for method, a in across.items():
            if method == "random_pooled":
                continue
            hits = ", ".join(f"{h:,}" if h else "—" for h in a["steps_to_target"])
            med = a["median_steps_to_target"]
            ratios = ", ".join(str(x) if x is not None else "—" for x in a.get("over_random", []))
            ratios += ratio_seeds(a) if ratios else ""
            text += (f"| {label(method)} | {seeds_run(a['seeds'], every_seed)} | {hits} | "
                     f"{f'{med:,.0f}' if med else '—'} | {ratios or ''} | "
                     f"{a.get('median_over_random', '') if a.get('median_over_random') is not None else ''} |\n")
        pooled = across.get("random_pooled")
        resampled = (pooled or {}).get("steps_to_target")
        if resampled:
            ratios = ", ".join(f"{label(m)} {a['median_over_random_resampled']}" for m, a in across.items()
                               if a.get("median_over_random_resampled") is not None)
            text += (f"\nrandom search's steps to the target over {resampled['draws']} resamples of its "
                     f"{pooled['trials']} trials (pooled over seeds; {resampled['slots']} at a time, one step rate): "
                     f"median {fmt_steps(resampled['median'])}, 95 % interval {fmt_steps(resampled['low'])} to "
                     f"{fmt_steps(resampled['high'])}, target within the budget in "
                     f"{100 * resampled['p_within_budget']:.0f} % of resamples"
                     + (f"; each method's median steps over that median: {ratios}" if ratios else "") + "\n")
        counted = [(m, a) for m, a in across.items() if m != "random_pooled" and a.get("target_hits", {}).get("trials")]
        if counted:
            text += ("\nhow often trials reach the target, all seeds together (a seed's first hit is one draw; "
                     "these count every hit):\n\n| method | seeds | trials | reaching the target | steps trained | "
                     "steps per hit | core-s per hit | steps per hit over random search's, by seed | pooled |\n"
                     "|---|---|---|---|---|---|---|---|---|\n")
        for method, a in counted:
            h = a["target_hits"]
            per_hit = f"{h['steps_per_hit']:,}" if h["steps_per_hit"] else "none reached it"
            by_seed = ", ".join("—" if x is None else str(x) for x in a.get("steps_per_hit_over_random", []))
            by_seed += ratio_seeds(a) if by_seed else ""
            pooled_ratio = a.get("pooled_steps_per_hit_over_random")
            text += (f"| {label(method)} | {seeds_run(a['seeds'], every_seed)} | {h['trials']} | "
                     f"{h['trials_reaching']} | {h['steps']:,} | {per_hit} | "
                     f"{h['core_s_per_hit'] if h['core_s_per_hit'] is not None else '—'} | {by_seed or '—'} | "
                     f"{'—' if pooled_ratio is None else pooled_ratio} |\n")
        if pooled:
            per_trial = data["seeds"][next(iter(data["seeds"]))]["budget"]["steps_per_trial"]
            text += (f"\nrandom search, expected best objective of n trials (Lucic et al.; {pooled['trials']} trials "
                     f"pooled over seeds; 95 % bootstrap interval) and the chance n trials reach the target:\n\n"
                     "| n trials | steps | expected best | interval | P(target) |\n|---|---|---|---|---|\n")
            m = len(pooled["expected_best"])
            for n in sorted({1, 2, 4, 8, 16, 32, 64, m} & set(range(1, m + 1))):
                text += (f"| {n} | {n * per_trial:,} | {pooled['expected_best'][n - 1]:.4g} | "
                         f"{pooled['low'][n - 1]:.4g}–{pooled['high'][n - 1]:.4g} | {pooled['p_reached'][n - 1]:.2f} |\n")
        agreement = [(seed, res["random"]["rung_agreement"]) for seed, res in sorted(data["seeds"].items())
                     if res.get("random", {}).get("rung_agreement")]
        if agreement:
            text += ("\nwhat ASHA's rungs could know, from random search's full-length trials: rank correlation of a "
                     "trial's best objective by the rung with its final best, and how many of the final best quarter "
                     "a cut keeping half at the rung keeps:\n\n| seed | rung | Spearman | best quarter kept |\n"
                     "|---|---|---|---|\n")
            for seed, rows in agreement:
                for a in rows:
                    text += f"| {seed} | {a['rung']:,} | {a['spearman']} | {a['best_quarter_kept']} of {a['best_quarter']} |\n"
    return text


def methods_of_space(data: dict) -> list[str]:
    """A space's methods over all its seeds, in one order, so a method keeps its colour in every panel."""
    methods: list[str] = []
    for _, res in sorted(data["seeds"].items(), key=lambda kv: int(kv[0])):
        methods += [m for m in methods_of(res) if m not in methods]
    return methods


def search_figure(search: dict):
    """The search results' matplotlib figure: one row of panels per space, one panel per seed (a method's three
    seeds in one panel, told apart only by line style, were unreadable at seven methods): the best objective so
    far against steps spent per method, a star at its first hit; random search's expected best of n trials
    pooled over seeds, with its interval, in every panel of its space; the target dashed. One legend per row,
    beside its last panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    columns = max(len(data["seeds"]) for data in search.values())
    fig, axes = plt.subplots(len(search), columns, figsize=(5.2 * columns + 3.2, 4.2 * len(search)),
                             squeeze=False, sharey="row")
    for panels, (name, data) in zip(axes, search.items()):
        methods = methods_of_space(data)
        seeds = sorted(data["seeds"], key=int)
        pooled = data.get("across_seeds", {}).get("random_pooled")
        target = data["target"]
        for ax, seed in zip(panels, seeds):
            res = data["seeds"][seed]
            for method in methods_of(res):
                r, colour = res[method], colour_of(method, methods)
                ax.step([p[0] for p in r["curve"]], [p[1] for p in r["curve"]], where="post", color=colour,
                        alpha=0.85)
                if r["steps_to_target"]:
                    ax.plot([r["steps_to_target"]], [next(p[1] for p in r["curve"] if p[0] == r["steps_to_target"])],
                            marker="*", color=colour, markersize=11, markeredgecolor="black", markeredgewidth=0.4)
            if pooled:
                per_trial, trials = res["budget"]["steps_per_trial"], res["budget"]["trials"]
                m = min(len(pooled["expected_best"]), trials)
                xs = [per_trial * n for n in range(1, m + 1)]
                ax.plot(xs, pooled["expected_best"][:m], color="black", lw=1.2)
                ax.fill_between(xs, pooled["low"][:m], pooled["high"][:m], color="grey", alpha=0.25)
            if math.isfinite(target["objective_max"]):
                ax.axhline(target["objective_max"], color="black", linestyle="--", lw=0.8)
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k"))  # full counts overlapped
            ax.set_title(f"{name}, seed {seed}", fontsize=9)
            ax.set_xlabel("training steps spent")
        for ax in panels[len(seeds):]:
            ax.set_visible(False)
        panels[0].set_ylabel(f"best objective so far (lower is better)\ntarget: {target['text']}", fontsize=8)
        handles = [Line2D([], [], color=colour_of(m, methods), label=label(m)) for m in methods]
        if any(data["seeds"][seed][m]["steps_to_target"] for seed in seeds for m in methods_of(data["seeds"][seed])):
            handles.append(Line2D([], [], marker="*", color="grey", markeredgecolor="black", markeredgewidth=0.4,
                                  linestyle="none", markersize=11, label="first reached the target"))
        if pooled:
            handles.append(Line2D([], [], color="black", lw=1.2,
                                  label=f"random search, expected best of n\n({pooled['trials']} trials pooled over "
                                        f"seeds; grey: 95 % bootstrap)"))
        if math.isfinite(target["objective_max"]):
            handles.append(Line2D([], [], color="black", linestyle="--", lw=0.8, label="target"))
        panels[len(seeds) - 1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def save_figure(fig, png: Path) -> None:
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110, bbox_inches="tight")  # the legend beside the axes
    plt.close(fig)


def seeds_run(seeds: list[str], every_seed: list[str]) -> str:
    """The seeds a method's figures come from, saying which are missing: a median over two seeds of three is
    not the three-seed median it sits beside."""
    missing = [s for s in every_seed if s not in seeds]
    return ", ".join(seeds) + (f" (not {', '.join(missing)})" if missing else "")


def ratio_seeds(a: dict) -> str:
    """Where a method's ratios to random search cover fewer seeds than its row (random search lacks one),
    the seeds they come from; "" where they cover the row's seeds."""
    paired = a.get("paired_seeds")
    return "" if paired is None or paired == a["seeds"] else f" (seeds {', '.join(paired)})"


def fmt_steps(steps) -> str:
    return "beyond the budget" if steps is None else f"{steps:,}"


def report_old(results: dict, png: Path) -> str:
    """The report of a file from before the objective (docs/benchmarks-sweeps*.json): best fid so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = results["search"]
    methods = ("tpe+asha", "random", "default")
    rows = ["| dataset | seed | method | trials | best fid at 25 / 50 / 75 / 100 % of the budget | "
            "diversity of that trial | steps to target |", "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(search), figsize=(5 * len(search), 3.6), squeeze=False)
    for ax, (name, data) in zip(axes[0], search.items()):
        for seed, res in sorted(data["seeds"].items()):
            budget = res["budget"]["steps"]
            for method, colour in zip(methods, COLOURS):
                r = res[method]
                points = []
                for frac in (0.25, 0.5, 0.75, 1.0):
                    upto = [p for p in r["curve"] if p[0] <= frac * budget]
                    points.append(f"{upto[-1][1]:.3g}" if upto else "—")
                hit = f"{r['steps_to_target']:,}" if r["steps_to_target"] else "—"
                rows.append(f"| {name} | {seed} | {label(method)} | {r.get('trials', '')} | {' / '.join(points)} "
                            f"| {r['diversity']:.2f} | {hit} |")
                ax.step([p[0] for p in r["curve"]], [p[1] for p in r["curve"]], where="post", color=colour, alpha=0.8,
                        linestyle=("-", "--", ":")[int(seed) % 3], label=f"{label(method)}, seed {seed}")
        ax.set_yscale("log")
        ax.set_title(f"{name} (target: {data['target']})", fontsize=8)
        ax.set_xlabel("training steps spent")
        ax.set_ylabel("best fid so far (old judgement)")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    save_figure(fig, png)
    return "\n".join(rows) + "\n"


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


def save(results: dict, out: str, own: frozenset = frozenset()) -> None:
    """Write `results` to `out`. `own`: the (space, seed) searches this process runs; every other seed, and
    every part this process lacks, is first taken from the file as it stands (under a lock on the file), so
    that processes running different seeds into one --out at once (the one-thread default config, a seed per
    core) keep each other's results instead of the last writer's alone."""
    def merged(on_disk: dict) -> dict:
        if own and on_disk:
            take_others(results, on_disk, own)
        return results

    update_locked(out, merged)


def update_locked(out: str, change) -> dict:
    """Read `out` (an empty dict if new), write `change(what was read)` back and return it, all under an
    exclusive lock on the file itself, so that read and write are one step for every process using this."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:  # "a+": created if missing, never truncated on open
        fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
        f.seek(0)
        text = f.read()
        results = change(json.loads(text) if text else {})
        f.seek(0)
        f.truncate()
        f.write(json.dumps(results, default=str))  # one line: the search files hold every evaluation (2.5 MB indented)
    return results


def derive_searches(results: dict) -> dict:
    """--report: the estimators added since the runs apply to them too."""
    for name, entry in results.get("search", {}).items():
        derive_if_judged(name, entry)
    return results


def derive_if_judged(name: str, entry: dict) -> None:
    """Only a known space searched under the objective; older files' searches by the lowest fid are kept as
    they are (report_old reads them)."""
    if name in SEARCH_CASES and entry.get("judged_by") == "objective":
        derive(entry, SEARCH_CASES[name])


def take_others(results: dict, on_disk: dict, own: frozenset) -> None:
    """Into `results`: the searches of `on_disk` that are not `own`, and its parts that `results` lacks; the
    summaries across seeds of every space that changed are derived again."""
    for key, value in on_disk.items():
        results.setdefault(key, value)
    for name, entry in on_disk.get("search", {}).items():
        mine = results["search"].setdefault(name, {**entry, "seeds": {}})
        others = {seed: res for seed, res in entry.get("seeds", {}).items() if (name, seed) not in own}
        if any(mine["seeds"].get(seed) != res for seed, res in others.items()):
            mine["seeds"].update(others)
            derive_if_judged(name, mine)


if __name__ == "__main__":
    main()
