"""The benchmark scripts run at a tiny size, so they cannot rot (their numbers come from full runs)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.integration
def test_overhead_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "o.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--repeats", "1", "--scale", "0.02",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    for case in ("ring8-mlp", "digits-dcgan"):
        med = data[case]["median"]
        assert med["hand"] > 0 and med["trial"] > 0 and med["sweep"] > 0 and 0 < med["eval_share_trial"] < 1


@pytest.mark.slow
@pytest.mark.integration
def test_sweep_benchmarks_run_tiny(tmp_path):
    out = tmp_path / "s.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--only", "utilisation", "--only", "peer",
                    "--trials", "2", "--steps", "200", "--out", str(out)], check=True, capture_output=True, timeout=900)
    data = json.loads(out.read_text())
    for share in ("share_idle_cpus=False", "share_idle_cpus=True"):
        measured = data["utilisation"][share]
        assert 0 < measured["utilisation_after_startup"] <= 1.0 and measured["one_thread_equivalent_utilisation"] > 0
    assert data["peer"]["judged_by"] == "objective"  # quick.yaml's mode_tv, in [0, 1]
    assert 0 <= data["peer"]["optuna_n_jobs"]["best_objective"] <= 1
    assert 0 <= data["peer"]["ganpipe_sweep"]["best_objective"] <= 1 and data["peer"]["wall_ratio_per_repeat"][0] > 0
    # repeats accumulate: the same command with more of them keeps the first and runs only the rest
    peer = [sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--only", "peer", "--trials", "2", "--steps", "200",
            "--repeats", "2", "--out", str(out)]
    subprocess.run(peer, check=True, capture_output=True, timeout=900)
    again = json.loads(out.read_text())
    for name in ("optuna_n_jobs", "ganpipe_sweep"):
        first = data["peer"][name]["runs"]
        assert len(first) == 1 and again["peer"][name]["runs"][:1] == first and len(again["peer"][name]["runs"]) == 2
    assert len(again["peer"]["wall_ratio_per_repeat"]) == 2 and again["utilisation"] == data["utilisation"]
    subprocess.run(peer, check=True, capture_output=True, timeout=900)  # both measured: nothing runs again
    assert json.loads(out.read_text())["peer"] == again["peer"]


@pytest.mark.slow
@pytest.mark.integration
def test_search_benchmark_runs_tiny_and_ranks_by_the_objective(tmp_path):
    """The issue-21 search benchmark on the broad grid25 space, tiny: three methods at one budget of training
    steps, every best the sweep's objective (mode_tv), never the lowest fid. Full sizes outlast a working
    session, so the run is killed part-way through its first sweep (the script, its sweep and their Ray, as
    the end of a session would) and the same command continues that sweep with `ganpipe sweep --resume`."""
    out, work = tmp_path / "s.json", tmp_path / "work"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--only", "search", "--seeds", "1",
           "--datasets", "grid25-broad", "--scale", "0.01", "--out", str(out), "--work", str(work)]
    first = work / "grid25-broad-0" / "tpe+asha-2x200"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if list(first.glob("ray_results/*/*/result.json")):  # a trial has reported: Tune has state to resume
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not out.exists()  # killed during its first sweep: nothing measured yet
    time.sleep(3)  # Ray's processes go with their driver
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    starts = [line.split(",")[0] for line in (first / "sweep.log").read_text().splitlines()
              if line.startswith("sweep grid25-broad: results in")]
    # the second run continued the first one's sweep (one experiment, the first run's). It may stop before it
    # prints its own line: on an idle machine the first run's trials can train the whole budget before the kill
    (experiment,) = [p for p in (first / "ray_results").iterdir() if p.is_dir()]
    assert starts and all(start.endswith(experiment.name) for start in starts)
    assert json.loads((first / "benchmark-wall.json").read_text())["runs"] == 2
    data = json.loads(out.read_text())["search"]["grid25-broad"]
    assert data["judged_by"] == "objective" and data["target"]["objective_max"] == 0.2
    seed0 = data["seeds"]["0"]
    assert set(seed0) == {"budget", "tpe+asha", "random", "default"}
    budget = seed0["budget"]["steps"]
    assert seed0["random"]["steps_spent"] == seed0["default"]["steps_spent"] == budget  # equal compute budget
    assert seed0["tpe+asha"]["steps_spent"] <= budget
    for method in ("tpe+asha", "random", "default"):
        r, records = seed0[method], seed0[method]["trial_records"]
        assert len(records) == r["trials"] and sum(x["steps"] for x in records) >= r["steps_spent"]
        assert [c[1] for c in r["curve"]] == sorted((c[1] for c in r["curve"]), reverse=True)  # a best so far
        assert all(a[1:] != b[1:] for a, b in zip(r["curve"][:-2], r["curve"][1:-1]))  # its change points
        assert r["curve"][-1][0] == r["steps_spent"]
        for x in records:  # a trial's best is its lowest objective, here mode_tv; its fid may be any
            assert x["best_objective"] == x["mode_tv_at_best"] and x["lowest_fid"] <= x["fid_at_best"]
        if r["steps_to_target"] is not None:  # the curve's hit is some trial's hit
            assert any(x["reached_at_step"] is not None for x in records)
    # random search spends its budget on whole trials: its best is its trials' lowest best objective
    assert seed0["random"]["best_objective"] == min(x["best_objective"] for x in seed0["random"]["trial_records"])
    assert all({"loss.name", "optimizer.lr_g"} <= set(x["config"]) for x in seed0["random"]["trial_records"])
    expected = seed0["random"]["expected_best"]  # Lucic et al.'s estimator over random search's trials
    m = seed0["random"]["trials"]
    assert len(expected["expected_best"]) == m and expected["budget_steps"][-1] == budget
    assert expected["expected_best"][-1] == pytest.approx(seed0["random"]["best_objective"], abs=1e-6)
    assert all(lo <= hi for lo, hi in zip(expected["low"], expected["high"]))
    across = data["across_seeds"]
    assert across["tpe+asha"]["seeds"] == ["0"] and len(across["tpe+asha"]["over_random"]) == 1
    assert len(across["default"]["over_random"]) == 1  # the default config is compared with random search too
    assert across["random_pooled"]["trials"] == m
    resampled = seed0["random"]["steps_to_target_resampled"]  # how lucky random search's one draw was
    assert resampled["slots"] == 2 and resampled["draws"] > 0
    assert (resampled["p_within_budget"] > 0) == any(x["reached_at_step"] for x in seed0["random"]["trial_records"])
    assert across["random_pooled"]["steps_to_target"] == resampled  # one seed: the pooled trials are its own
    for method in ("tpe+asha", "random", "default"):  # every hit counted, against every step trained
        hits = seed0[method]["target_hits"]
        assert hits["trials_reaching"] == sum(x["reached_at_step"] is not None for x in seed0[method]["trial_records"])
        assert hits["steps"] == sum(x["steps"] for x in seed0[method]["trial_records"]) == across[method]["target_hits"]["steps"]

    # --report trains nothing: it derives again what the runs give (the same here), prints the tables, draws
    report = [sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--report", "--png", str(tmp_path / "c.png")]
    done = subprocess.run(report + ["--out", str(out)], check=True, capture_output=True, text=True, timeout=300)
    assert "TPE + ASHA" in done.stdout and (tmp_path / "c.png").stat().st_size > 0
    assert json.loads(out.read_text())["search"]["grid25-broad"] == data
    missing = subprocess.run(report + ["--out", str(tmp_path / "none.json")], capture_output=True, text=True)
    assert missing.returncode == 2 and "none.json" in missing.stderr and not (tmp_path / "none.json").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_a_ctrl_c_to_the_search_benchmarks_sweep_leaves_it_to_be_continued(tmp_path, monkeypatch):
    """Only the script's own stop at the budget ends a method: a Ctrl-C that reaches its sweep from outside
    (the sweep exits 130, as after that stop) must not count the part-way run as the method's result."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import steps_trained

    out, work = tmp_path / "s.json", tmp_path / "work"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--only", "search", "--seeds", "1",
           "--datasets", "grid25-broad", "--scale", "0.01", "--search-steps", "1000000", "--methods", "tpe+asha",
           "--out", str(out), "--work", str(work)]
    # 10,000-step trials: the budget is far from spent when the first trial has reported
    first = work / "grid25-broad-0" / "tpe+asha-2x10000"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300  # Tune creates result.json empty when a trial starts: wait for a report
        while not ((first / "ray_results").is_dir() and steps_trained(first / "ray_results")):
            assert time.time() < deadline and proc.poll() is None, "no trial reported within 300 s"
            time.sleep(0.5)
        children = [int(pid) for f in Path(f"/proc/{proc.pid}/task").glob("*/children")
                    for pid in f.read_text().split()]
        (sweep,) = [pid for pid in children if b"ganpipe.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(sweep, signal.SIGINT)  # the sweep alone, as a Ctrl-C in its terminal would
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode != 0 and b"ganpipe sweep exited 130" in err
    assert not out.exists()  # nothing recorded as measured
    wall = json.loads((first / "benchmark-wall.json").read_text())
    assert wall["runs"] == 1 and "ended" not in wall  # the next run continues the sweep
    from ray.tune import Tuner

    (experiment,) = [p for p in (first / "ray_results").iterdir() if p.is_dir()]
    assert Tuner.can_restore(str(experiment))
    # --peek reads the stopped search as it stands, training nothing and writing nothing
    peeked = subprocess.run(cmd + ["--peek"], check=True, capture_output=True, text=True, timeout=120)
    (found,) = [json.loads(line) for line in peeked.stdout.splitlines()]
    assert found["method"] == "tpe+asha" and found["trials"] >= 1 and 0 < found["steps_spent"] <= found["budget"]
    assert found["steps_trained"] == steps_trained(first / "ray_results") and not out.exists()  # every trial read


def test_search_benchmark_medians_count_a_missed_target_as_the_worst(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import hit_ratio, median_or_none

    assert median_or_none([3000, None, 1000]) == 3000 and median_or_none([None, None, 1000]) is None
    assert median_or_none([1000, 3000]) == 2000 and median_or_none([]) is None
    assert hit_ratio(1000, 4000, 64000) == 0.25
    assert hit_ratio(1000, None, 64000) == "<= 0.0156"  # random search missed: at most 1000 / 64000
    assert hit_ratio(None, 4000, 64000) == ">= 16.0000" and hit_ratio(None, None, 64000) is None
    assert median_or_none([0.25, "<= 0.0156", ">= 16.0000"]) == 0.25


def test_target_hits_count_every_trial_that_reached_the_target_per_step_trained(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import target_hits

    records = [{"steps": 24000, "reached_at_step": 19000, "train_core_s": 100.0},
               {"steps": 8000, "reached_at_step": None, "train_core_s": 30.0},
               {"steps": 16000, "reached_at_step": 15000, "train_core_s": 70.0}]
    assert target_hits(records) == {"trials": 3, "trials_reaching": 2, "steps": 48000, "core_s": 200.0,
                                    "steps_per_hit": 24000, "core_s_per_hit": 100.0}
    assert target_hits(records[1:2])["steps_per_hit"] is None  # none reached it: no rate, not zero


def test_a_stored_curve_keeps_its_change_points_and_reads_as_the_whole_curve(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import change_points, summarise

    # [steps spent, best objective so far, its fid, its modes, target reached so far], one per evaluation
    whole = [[500, 0.9, 3.0, 12, False], [1000, 0.9, 3.0, 12, False], [1500, 0.5, 1.0, 20, False],
             [2000, 0.5, 1.0, 20, False], [2500, 0.5, 1.0, 20, False], [3000, 0.5, 1.0, 20, True],
             [3500, 0.1, 0.2, 25, True], [4000, 0.1, 0.2, 25, True], [4500, 0.1, 0.2, 25, True]]
    kept = change_points(whole)
    assert kept == [whole[i] for i in (0, 2, 5, 6, 8)]  # first, a better best, the hit, a better best, last

    def at(curve, step):  # how the report reads a curve: the last point at or before a step
        return [p for p in curve if p[0] <= step][-1][1:]

    assert all(at(kept, p[0]) == at(whole, p[0]) for p in whole)
    records = [{"steps": 4500, "train_core_s": 9.0}]
    assert {**summarise(whole, records), "curve": None} == {**summarise(kept, records), "curve": None}
    assert summarise(whole, records)["curve"] == kept and change_points(kept) == kept  # stored thinned, once
    assert change_points(whole[:1]) == whole[:1] and change_points([]) == []


def test_steps_per_hit_over_random_pairs_the_seeds_both_methods_ran(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import SEARCH_CASES, across_seeds

    def trials(hits: list):  # 24,000-step trials, reaching the target at these steps (None: never)
        return {"trial_records": [{"steps": 24000, "reached_at_step": h, "train_core_s": 10.0, "best_objective":
                                   0.1 if h else 0.9} for h in hits], "steps_to_target": None, "best_objective": 0.1}

    budget = {"trials": 4, "steps_per_trial": 24000, "steps": 96000}
    data = {"seeds": {
        "0": {"budget": budget, "random": trials([None, 20000, None, None]), "tpe+asha": trials([20000, 10000, None, 9000])},
        "1": {"budget": budget, "random": trials([None, None, 12000, 15000]), "tpe+asha": trials([None] * 4)},
        "2": {"budget": budget, "tpe+asha": trials([8000] * 4)}}}  # no random search here: not compared
    out = across_seeds(data, ["random", "tpe+asha"], SEARCH_CASES["grid25-broad"])
    tpe = out["tpe+asha"]
    assert tpe["steps_per_hit_over_random"] == [round(32000 / 96000, 4), None]  # seed 1: TPE reached nothing
    assert tpe["pooled_steps_per_hit_over_random"] == round((192000 / 3) / (192000 / 3), 4)  # seeds 0 and 1 only
    assert tpe["target_hits"]["trials_reaching"] == 7 and out["random"]["target_hits"]["trials_reaching"] == 3


def test_the_report_names_the_seeds_a_method_ran_where_it_lacks_some(tmp_path, monkeypatch):
    """A method run in seeds 0 and 2 only has a median of two values beside the others' medians of three: the
    report's across-seeds tables say which seeds each row comes from."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import SEARCH_CASES, across_seeds, report

    def run(hit):  # one 24,000-step trial reaching the target at `hit` (None: never)
        best = 0.1 if hit else 0.9
        curve = [[1000, 0.9, 0.5, 3, False]] + ([[hit, best, 0.02, 25, True]] if hit else [])
        return {"steps_to_target": hit, "best_objective": best, "fid_at_best": 0.02, "modes_at_best": 25,
                "trials": 1, "train_core_s": 10.0, "curve": curve + [[24000, best, 0.02, 25, hit is not None]],
                "trial_records": [{"steps": 24000, "reached_at_step": hit, "train_core_s": 10.0,
                                   "best_objective": best}]}

    budget = {"trials": 1, "steps_per_trial": 24000, "steps": 24000}
    target = {"objective_max": 0.2, "modes_min": 25, "text": "mode_tv <= 0.20", "papers": "25/25 modes"}
    data = {"judged_by": "objective", "target": target, "seeds": {
        "0": {"budget": budget, "random": run(20000), "gp+asha": run(10000)},
        "1": {"budget": budget, "random": run(None)},
        "2": {"budget": budget, "random": run(16000), "gp+asha": run(12000)}}}
    data["across_seeds"] = across_seeds(data, ["random", "gp+asha"], SEARCH_CASES["grid25-broad"])
    text = report({"search": {"grid25-broad": data}}, tmp_path / "c.png")
    rows = [line for line in text.splitlines() if line.startswith("| GP + ASHA | ")]
    assert len(rows) == 2  # steps to the target, and trials reaching it
    assert all(row.startswith("| GP + ASHA | 0, 2 (not 1) | ") for row in rows)
    assert "| GP + ASHA | 0, 2 (not 1) | 10,000, 12,000 | 11,000 |" in text  # its median of two, so marked
    assert any(line.startswith("| random search | 0, 1, 2 | ") for line in text.splitlines())


def test_the_report_says_which_seeds_a_ratio_to_random_search_comes_from_where_random_lacks_one(
        tmp_path, monkeypatch):
    """A method run in seeds 0, 1, 2 while random search ran 0 and 2: its ratios to random search are two, and
    the report says they are seeds 0 and 2's, not the first two of the row's three."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import SEARCH_CASES, across_seeds, report

    def run(hit):  # one 24,000-step trial reaching the target at `hit`
        curve = [[1000, 0.9, 0.5, 3, False], [hit, 0.1, 0.02, 25, True], [24000, 0.1, 0.02, 25, True]]
        return {"steps_to_target": hit, "best_objective": 0.1, "fid_at_best": 0.02, "modes_at_best": 25,
                "trials": 1, "train_core_s": 10.0, "curve": curve,
                "trial_records": [{"steps": 24000, "reached_at_step": hit, "train_core_s": 10.0,
                                   "best_objective": 0.1}]}

    budget = {"trials": 1, "steps_per_trial": 24000, "steps": 24000}
    target = {"objective_max": 0.2, "modes_min": 25, "text": "mode_tv <= 0.20", "papers": "25/25 modes"}
    data = {"judged_by": "objective", "target": target, "seeds": {
        "0": {"budget": budget, "random": run(20000), "gp+asha": run(10000)},
        "1": {"budget": budget, "gp+asha": run(4000)},
        "2": {"budget": budget, "random": run(16000), "gp+asha": run(12000)}}}
    data["across_seeds"] = across_seeds(data, ["random", "gp+asha"], SEARCH_CASES["grid25-broad"])
    assert data["across_seeds"]["gp+asha"]["paired_seeds"] == ["0", "2"]
    text = report({"search": {"grid25-broad": data}}, tmp_path / "c.png")
    # steps to the target: 10,000 / 20,000 and 12,000 / 16,000, from seeds 0 and 2
    assert "| GP + ASHA | 0, 1, 2 | 10,000, 4,000, 12,000 | 10,000 | 0.5, 0.75 (seeds 0, 2) |" in text
    # steps per hit over random search's (24,000 steps a hit in every run): the same two seeds, so marked
    assert any(line.startswith("| GP + ASHA | 0, 1, 2 | 3 | 3 | ") and "| 1.0, 1.0 (seeds 0, 2) | 1.0 |" in line
               for line in text.splitlines())
    assert "| random search | 0, 2 (not 1) | " in text


def test_every_method_of_the_stored_search_file_has_its_own_colour_in_the_figure(monkeypatch):
    """The figure tells methods apart by colour (seeds by panel): each method of the shipped grid25-broad file
    (seven: five searches, random search, the default config) draws in a colour of its own."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import colour_of, methods_of_space

    data = json.loads((ROOT / "docs" / "benchmarks-search-grid25-broad.json").read_text())["search"]["grid25-broad"]
    methods = methods_of_space(data)
    assert len(methods) >= 7
    assert len({colour_of(m, methods) for m in methods}) == len(methods)


def _save_seed_many_times(out: str, seed: str, times: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sweeps import save

    for i in range(times):  # each save starts from this process's own, stale, view of the file
        results = {"search": {"grid25-broad": {"seeds": {seed: {"saved": i}}}}}  # nothing to derive
        save(results, out, frozenset({("grid25-broad", seed)}))


def _report_many_times(out: str, times: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sweeps import derive_searches, update_locked

    for _ in range(times):  # what --report does to the file
        update_locked(out, derive_searches)


def test_searches_of_different_seeds_saved_into_one_file_at_once_keep_each_others(tmp_path, monkeypatch):
    """Two processes running different seeds into one --out (a seed per core), and a --report meanwhile: every
    save keeps the seeds this process does not run as the file has them, and the summary across seeds counts
    them."""
    import multiprocessing

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import save

    out = tmp_path / "s.json"
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_save_seed_many_times, args=(str(out), seed, 40)) for seed in ("0", "1")]
    workers.append(spawn.Process(target=_report_many_times, args=(str(out), 40)))  # --report meanwhile loses nothing
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert json.loads(out.read_text())["search"]["grid25-broad"]["seeds"] == {"0": {"saved": 39}, "1": {"saved": 39}}

    budget = {"trials": 2, "steps_per_trial": 24000, "steps": 48000}
    hits = {"steps_to_target": 24000, "best_objective": 0.1, "trial_records": [
        {"steps": 24000, "reached_at_step": 24000, "train_core_s": 10.0, "best_objective": 0.1}] * 2}
    out.write_text(json.dumps({"peer": {"case": "ring8"}, "search": {"grid25-broad": {
        "judged_by": "objective", "seeds": {"0": {"budget": budget, "default": hits}}}}}))
    mine = {"search": {"grid25-broad": {"judged_by": "objective", "seeds": {
        "0": {"budget": budget},  # loaded before the other process measured seed 0: stale
        "1": {"budget": budget, "default": {**hits, "steps_to_target": 12000}}}}}}
    save(mine, str(out), frozenset({("grid25-broad", "1")}))
    saved = json.loads(out.read_text())
    seed0 = saved["search"]["grid25-broad"]["seeds"]["0"]["default"]  # the file's, with what is derived from it
    assert saved["peer"] == {"case": "ring8"} and {k: seed0[k] for k in hits} == hits
    assert saved["search"]["grid25-broad"]["across_seeds"]["default"]["steps_to_target"] == [24000, 12000]


def test_a_method_names_its_sampler_start_up_trials_and_asha(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import SEARCH_CASES, label, method_sets, parse_method

    case = SEARCH_CASES["grid25-broad"]  # 8 start-up trials of 32
    assert parse_method("tpe+asha") == ("tpe", None, 0, True)
    assert parse_method("tpe-group4-short+asha") == ("tpe-group", 4, 1, True)
    assert parse_method("tpe4-short2+asha") == ("tpe", 4, 2, True)
    assert parse_method("cmaes") == ("cmaes", None, 0, False)
    assert "search.startup_trials=8" in method_sets("tpe+asha", case, 32, 24000, 1000)
    assert "search.startup_trials=4" in method_sets("tpe4+asha", case, 32, 24000, 1000)
    assert "search.startup_trials=2" in method_sets("tpe+asha", case, 2, 200, 100)  # the case's share, at least 2
    assert not any(s.startswith("search.startup_steps") for s in method_sets("tpe+asha", case, 32, 24000, 1000))
    assert "search.startup_steps=8000" in method_sets("tpe-short+asha", case, 32, 24000, 1000)  # the first rung
    assert "search.startup_steps=16000" in method_sets("tpe-short2+asha", case, 32, 24000, 1000)  # the second
    with pytest.raises(SystemExit, match="no rung 3"):  # rungs at 8,000 and 16,000 in trials of 24,000
        method_sets("tpe-short3+asha", case, 32, 24000, 1000)
    assert label("tpe4+asha") == "TPE (4 start-up) + ASHA" and label("gp+asha") == "GP + ASHA"
    assert label("tpe4-short+asha") == "TPE (4 start-up to the first rung) + ASHA"
    assert label("tpe-short+asha") == "TPE (start-up to the first rung) + ASHA"
    assert label("tpe4-short2+asha") == "TPE (4 start-up to the second rung) + ASHA"
    assert label("tpe-group4+asha") == "TPE (group, 4 start-up) + ASHA" and label("tpe-group+asha") == "TPE (group) + ASHA"
    for bad in ("tpe+ash", "cmaes4+asha", "cmaes-short+asha", "sobol+asha", "tpe-4+asha", "tpe4+short+asha",
                "tpe0+asha", "tpe-short", "tpe-short0+asha", "tpe-short2"):  # 0 start-up trials: Optuna's 10
        with pytest.raises(SystemExit, match="unknown method"):
            parse_method(bad)


def test_a_start_up_to_a_rung_the_trials_lack_fails_before_any_method_runs(tmp_path):
    """Methods run one after another for hours: the last one's rung is checked before the first starts."""
    out, work = tmp_path / "s.json", tmp_path / "work"
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "sweeps.py"), "--only", "search",
                             "--datasets", "grid25-broad", "--methods", "random", "tpe-short3+asha",
                             "--work", str(work), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)  # had random search started, it would run for hours
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode != 0 and "no rung 3" in err and "8000, 16000" in err
    assert not out.exists() and not work.exists()


def test_rung_agreement_says_whether_an_early_rung_ranks_trials_as_their_end_does(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import asha_rungs, rung_agreement

    # eight full-length trials: up to step 2,000 they rank in reverse of how they end (a late bloomer wins),
    # from 4,000 on as they end
    records = []
    for i in range(8):
        evals = [[1000, 0.90 + 0.01 * i, 0], [2000, 0.80 + 0.01 * i, 0], [4000, 0.70 - 0.05 * i, 5],
                 [8000, 0.60 - 0.05 * i, 9]]
        records.append({"best_objective": min(e[1] for e in evals), "evaluations": evals})
    by_rung = {a["rung"]: a for a in rung_agreement(records, [2000, 4000])}
    assert by_rung[2000]["spearman"] == -1.0 and by_rung[2000]["best_quarter_kept"] == 0  # a halving there loses the best
    assert by_rung[4000]["spearman"] == 1.0 and by_rung[4000]["best_quarter_kept"] == by_rung[4000]["best_quarter"] == 2
    assert rung_agreement(records[:3], [2000]) == []  # too few trials to say
    assert asha_rungs({"grace": 2000, "reduction": 2}, 24000, 1000) == [2000, 4000, 8000, 16000]


@pytest.mark.slow
def test_threads_benchmark_runs(tmp_path):
    out = tmp_path / "t.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "threads.py"), "--repeats", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=300, cwd=ROOT / "benchmarks")
    data = json.loads(out.read_text())
    for case in ("ring8-mlp", "digits-dcgan"):
        assert data[case]["median"]["1"] > 0 and data[case]["speedup_2_over_1"] > 0


@pytest.mark.slow
def test_eval_cost_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "e.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_cost.py"), "--repeats", "1", "--every", "20",
                    "--cases", "quick", "stability-mlp", "--blas-repeats", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    for case in ("quick", "stability-mlp"):
        med = data[case]["median"]
        assert med["every"] == 20 and med["eval_s"] > 0 and 0 < med["steady_share"] < 1 and 0 < med["wall_share"] < 1
    assert data["stability-mlp"]["median"]["threads"] == 2  # the sweep's own resources.cpu
    for load in ("idle", "one core busy"):
        assert all(data["blas_threads"][load][blas]["median"] > 0 for blas in ("default", "1"))


def test_a_slot_freed_within_the_timestamps_resolution_is_no_gap(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from sweeps import CORES, scheduling_gaps

    first = [(0.0, 10.0 + i) for i in range(CORES)]  # the first slots' trials end at 10, 11, ...
    last_end = first[-1][1]
    # whole-second timestamps: the next trial reads as starting 0.4 s before the end that freed its slot
    # (the old rule took the end before that one instead); the trial after it really waited 3 s
    later = [(last_end - 0.4, 30.0), (33.0, 40.0)]
    assert scheduling_gaps(first + later) == [0.0, 3.0]


@pytest.mark.slow
def test_gpu_check_smoke_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py is for a lent GPU; its --device cpu smoke run only keeps it from rotting: both
    of its evaluators then run on the CPU, so their metrics must be equal, and the figures must be there."""
    out = tmp_path / "g.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--parts",
                    "evaluator", "eval_share", "--every", "10", "--repeats", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    for name in ("ring8", "digits", "stacked-digits"):
        assert set(data["evaluator"][name]["abs_diff"].values()) == {0.0}
    for case in data["eval_share"].values():
        assert case["steps_per_sec"] > 0 and 0 < case["share_gpu"] < 1 and 0 < case["share_cpu"] < 1


@pytest.mark.slow
def test_gpu_sweep_smoke_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_sweep.py is for a lent GPU (a real sweep with fractional GPUs); its CPU smoke run, two
    trials of quick.yaml on one CPU each, keeps it from rotting: a real sweep, both trials to the end, no
    nvidia-smi samples."""
    out = tmp_path / "g.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_sweep.py"), "--gpus", "0", "--cpus", "1",
                    "--trials", "2", "--steps", "20", "--sweep", str(ROOT / "sweeps" / "quick.yaml"),
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    (run,) = data["variants"]
    assert data["sweep"] == "sweeps/quick.yaml" and run["trials"] == run["trials_ended"] == 2
    assert 1 <= run["most_trials_at_once"] <= 2 and run["gpu"]["samples"] == 0 and len(run["spans_s"]) == 2
    assert all(speed > 0 for speed in run["steps_per_s"])


def test_gpu_step_smoke_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_step.py is for a lent GPU; its --device cpu smoke run keeps it from rotting (it reaches
    into the trainer's step and draw methods): every split of both cases measured, no CUDA calls counted."""
    out = tmp_path / "g.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_step.py"), "--device", "cpu", "--steps", "2",
                    "--repeats", "1", "--out", str(out)], check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    assert data["device"] == "cpu"
    for name in ("stability MLP corner", "stability first values"):
        assert data[name]["calls"] == {}
        assert set(data[name]["steps_per_sec"]) == {"as_is", "no_check", "device_data", "no_ema"}
        assert all(speed > 0 for speed in data[name]["steps_per_sec"].values())


def test_trials_at_once_ignores_overlaps_within_the_timestamps_resolution(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from gpu_sweep import most_at_once

    assert most_at_once([(0.0, 10.0), (9.6, 20.0), (19.2, 30.0)]) == 1  # one after another, whole-second clocks
    assert most_at_once([(0.0, 10.0), (9.0, 20.0)]) == 1  # a slot freed and taken within the same second
    assert most_at_once([(0.0, 10.0), (2.0, 12.0), (3.0, 5.0), (20.0, 30.0)]) == 3
    assert most_at_once([(0.0, 0.8), (0.2, 0.9)]) == 2  # trials shorter than the resolution still count
    assert most_at_once([]) == 0


def test_gpu_graphs_smoke_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_graphs.py is for a lent GPU; on the CPU nothing is graphed, so its eager and 'graphed'
    trainers are the same run: identical weights and draws, the CLI's two runs log the same fids, and both
    name the step a NaN first reached the losses."""
    out = tmp_path / "g.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_graphs.py"), "--device", "cpu", "--parts", "matrix",
                    "cli", "divergence", "--cases", "quick ring8", "--steps", "4", "--cli-steps", "20", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    data = json.loads(out.read_text())
    assert set(data["matrix"]) == {"quick ring8 first values"}
    for case in data["matrix"].values():
        assert case["same_draws"] and case["generator_max_abs_diff"] == 0.0 and case["d_max_abs_diff"] == 0.0
        assert case["cpu_continues"] == case["resumed"] == "finished" and not case["captured"]
    assert data["cli"]["eager"]["rc"] == data["cli"]["graphed"]["rc"] == 0
    assert data["cli"]["eager"]["fid_logged"] == data["cli"]["graphed"]["fid_logged"] != []
    for run in data["divergence"].values():  # NaN poured into D after step 10: step 11 is named
        assert run["status"] == "diverged" and run["message"].startswith("diverged at step 11:")


def test_ema_cost_benchmark_runs_tiny():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ema_cost.py"), "--repeats", "1", "--number", "5"],
                          check=True, capture_output=True, text=True, timeout=300)
    data = json.loads(proc.stdout)
    assert all(t["median_us"] > 0 for case in data.values() for t in case.values())


@pytest.mark.slow
@pytest.mark.integration
def test_tracking_scale_benchmark_runs_tiny(tmp_path):
    """benchmarks/tracking_scale.py at its CI size (4 trials x 5 reports, tracking on and off): every result
    Tune received is in PostgreSQL exactly once, right after fit() and after the sweep's end."""
    out = tmp_path / "ts.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tracking_scale.py"), "--tiny", "--out", str(out)],
                   check=True, capture_output=True, timeout=900)
    data = json.loads(out.read_text())
    on, off = data["modes"]["on"], data["modes"]["off"]
    assert on["results"] == off["results"] == data["results_expected"] == 4 * 5
    assert on["trial_errors"] == off["trial_errors"] == 0 and on["exit_code"] == off["exit_code"] == 0
    assert data["expected_rows"]["child_metrics"] == 4 * 5 * len(on["metric_keys"])
    assert data["exact"] == {"rows_after_fit": True, "rows_final": True}
    assert on["rows_final"]["child_metric_keys"] == on["metric_keys"]
    assert on["rows_final"]["child_runs_by_status"] == {"FINISHED": 4}
    assert on["driver_cpu_ms_per_result"] > 0 and data["fit_wall_ratio_on_over_off"] > 0
    # the driver's CPU split by its threads: Tune's loop runs on the main thread ("python")
    assert on["driver_thread_cpu_ms_per_result"].get("python", 0) > 0


@pytest.mark.slow
@pytest.mark.integration
def test_champions_benchmark_runs_tiny(tmp_path):
    """benchmarks/champions.py at its CI size: pipelines/ci-ring8.yaml once (seed 0), its champion scored under
    the published protocol in a fresh interpreter, and the table with the published row beside it."""
    out = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "champions.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    case = json.loads(out.read_text())["cases"]["ci-ring8"]
    (run,) = case["runs"]
    assert run["exit_code"] == 0 and run["outcome"] != "refused" and run["wall_s"] > 0
    assert run["model_uri"].startswith("models:/ci-ring8/")
    score = run["score"]  # what score_champion.py measured: 2,500 samples, 3 std
    assert score["n"] == 2500 and score["of"] == 8 and 0 <= score["modes"] <= 8 and 0 <= score["high_quality"] <= 1
    assert case["summary"]["median"]["modes"] == score["modes"] and case["summary"]["promoted"] == 1
    assert "PacGAN2" in json.loads(out.read_text())["table"]


@pytest.mark.slow
def test_stacked_digits_scorer_counts_modes_in_a_fresh_interpreter(tmp_path):
    """score_champion.py's Stacked-digits protocol (26,000 samples, its own digit classifier, 1,000 modes) on
    samples whose answer is known: real stacked digits cover every mode at the real data's KL, and a generator
    collapsed onto one digit triple covers one mode at KL log(1000)."""
    from sklearn.datasets import load_digits

    images = load_digits().images / 8.0 - 1.0
    rng = np.random.default_rng(7)
    real = images[rng.integers(len(images), size=(26000, 3))]
    one = np.repeat(images[[0, 1, 2]][None], 26000, axis=0)

    def scored(samples):
        np.save(tmp_path / "s.npy", samples.astype(np.float32))
        proc = subprocess.run([sys.executable, "-I", str(ROOT / "benchmarks" / "score_champion.py"),
                               str(tmp_path / "s.npy"), "--dataset", "stacked-digits", "--json"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    full = scored(real)
    assert full["modes"] == 1000 and full["n"] == 26000 and full["classifier_held_out_accuracy"] > 0.95
    # multinomial sampling alone puts KL near (K - 1) / 2N = 0.019 for a perfect generator
    assert 0.012 < full["kl"] < 0.03 and 0.012 < full["kl_floor"] < 0.03, full
    collapsed = scored(one)
    assert collapsed["modes"] == 1 and abs(collapsed["kl"] - math.log(1000)) < 1e-6, collapsed


def test_the_search_figure_draws_one_panel_per_seed_with_each_method_in_one_colour_throughout(monkeypatch):
    """Seven methods times three seeds in one panel, told apart by line style, could not be read: the figure has
    a panel per seed, each drawing only the methods run in that seed, a method in the same colour in every
    panel, and one legend naming each method once."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from sweeps import colour_of, label, methods_of, methods_of_space, search_figure

    def run(hit):
        best = 0.1 if hit else 0.9
        curve = [[1000, 0.9, 0.5, 3, False]] + ([[hit, best, 0.02, 25, True]] if hit else [])
        return {"steps_to_target": hit, "best_objective": best, "fid_at_best": 0.02, "modes_at_best": 25,
                "trials": 1, "train_core_s": 10.0, "curve": curve + [[24000, best, 0.02, 25, hit is not None]]}

    budget = {"trials": 1, "steps_per_trial": 24000, "steps": 24000}
    target = {"objective_max": 0.2, "modes_min": 25, "text": "mode_tv <= 0.20", "papers": "25/25 modes"}
    data = {"judged_by": "objective", "target": target, "seeds": {
        "0": {"budget": budget, "random": run(20000), "gp+asha": run(10000), "default": run(None)},
        "1": {"budget": budget, "gp+asha": run(4000)},
        "2": {"budget": budget, "random": run(None), "gp+asha": run(12000)}}}
    methods = methods_of_space(data)
    fig = search_figure({"grid25-broad": data})
    try:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in panels] == [f"grid25-broad, seed {s}" for s in "012"]
        for ax, seed in zip(panels, "012"):
            curves = {to_hex(line.get_color()) for line in ax.get_lines() if len(line.get_xdata()) > 1
                      and line.get_linestyle() == "-" and to_hex(line.get_color()) != "#000000"}
            assert curves == {to_hex(colour_of(m, methods)) for m in methods_of(data["seeds"][seed])}, seed
        legends = [ax.get_legend() for ax in panels if ax.get_legend()]
        assert len(legends) == 1 and legends[0].axes is panels[-1]
        names = [t.get_text() for t in legends[0].get_texts()]
        assert [n for n in names if n in {label(m) for m in methods}] == [label(m) for m in methods]
        assert "first reached the target" in names and "target" in names
    finally:
        plt.close(fig)
