"""Tracking at scale (issue 20): many trials x many reports through the real sweep driver, its Tune callbacks
and each trial's MLflow child run, against an MLflow server on PostgreSQL; the trials train nothing
(ganpipe.tune.bench: GANPIPE_BENCH_NO_TRAIN), so everything measured is reporting and tracking.

    python benchmarks/tracking_scale.py --trials 1000 --reports 100 --out docs/benchmarks-tracking-scale.json
    python benchmarks/tracking_scale.py --tiny --out /tmp/tracking-scale.json      # the CI size

It starts a private PostgreSQL (Debian's server binaries, /usr/lib/postgresql/*/bin) and `ganpipe server`
on it, then runs the same sweep twice, each time in a fresh process with its own in-process Ray
(`ganpipe sweep`'s driver, ganpipe.tune.driver.run_sweep):
  on   trials log every evaluation to their child run (the real TrialRun and its background sender)
  off  the same Tune run with tracking off (GANPIPE_BENCH_NO_TRACKING: no child runs, nothing sent)
and measures, from Tuner.fit()'s start to its return:
  driver_cpu_ms_per_result  CPU time (user + system, all threads) of the driver process, the one that runs
                            Tune's controller, the searcher, the scheduler and ganpipe's callbacks, per result
  fit_wall_s                wall time of the Tune run; on / off is what tracking costs the sweep
  cpu_s                     CPU seconds of every other part: Ray's own processes, the trials' workers, the
                            MLflow server, PostgreSQL
then counts the rows in PostgreSQL right after fit() (what the trials sent) and after the sweep's end (its
report and reconciliation), against trials x reports x metric keys.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"trials": 4, "reports": 5}
EVERY = 100  # G steps between evaluations: train.steps = reports x EVERY
CPUS = 2  # the in-process Ray's CPUs (--num-cpus of `ganpipe sweep`)


# ---- processes, from /proc -------------------------------------------------------------------
def _stat(pid: int, task: str = "") -> list[str] | None:
    """Fields of /proc/PID/stat (or of one thread's, /proc/PID/task/TID/stat) from the state on (field 3 of proc(5))."""
    try:
        text = Path(f"/proc/{pid}{task}/stat").read_text()
    except OSError:  # gone (a process, or a thread that ended between a listing and this read)
        return None
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))):
            parents[int(entry.name)] = int(st[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [c for c, p in parents.items() if p == parent]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pid: int, with_reaped: bool = True) -> float:
    """utime + stime of a process (and of its children it has waited for: cutime + cstime)."""
    st = _stat(pid)
    if st is None:
        return 0.0
    ticks = int(st[11]) + int(st[12]) + ((int(st[13]) + int(st[14])) if with_reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads, summed by thread name (/proc/PID/task/TID/comm)."""
    by_name: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        st = _stat(pid, f"/task/{task.name}")
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            st = None
        if st is not None:
            by_name[name] = by_name.get(name, 0.0) + (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    return by_name


def tree_cpu(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(p) for p in descendants(pid))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---- PostgreSQL and the MLflow server ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres(root: Path):
    """A private PostgreSQL on 127.0.0.1 (as user postgres when run as root); yields (uri, postmaster pid)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("PostgreSQL server binaries are missing: apt-get install postgresql (.ci/run does)")
    bindir, port = Path(found[-1]).parent, free_port()
    data, sock = root / "pg", root / "pgsock"
    sock.mkdir()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"),
                            "-o", f"-p {port} -k {sock} -h 127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_pg + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                "mlflow"], check=True, capture_output=True)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow", postmaster
    finally:
        subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(root: Path, backend: str, workers: int):
    """`ganpipe server` on the backend, in its own process group; yields (uri, pid)."""
    port = free_port()
    log = open(root / "mlflow-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ganpipe.cli", "server", "--backend-store-uri", backend,
                             "--artifacts-destination", str(root / "artifacts"), "--port", str(port),
                             "--workers", str(workers)],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not healthy(port):
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                tail = (root / "mlflow-server.log").read_text()[-3000:]
                raise RuntimeError(f"the MLflow server did not come up (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)  # the group: the server's workers too
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


# ---- the sweep -------------------------------------------------------------------------------
def sweep_yaml(trials: int, reports: int, concurrency: int) -> dict:
    """quick.yaml's search space on ring8 with a tiny MLP (its checkpoints are what a trial of the double
    saves anyway), every trial run to its end (no ASHA: each reports exactly `reports` times)."""
    return {
        "name": "tracking-scale",
        "description": "issue 20: tracking at scale; trials train nothing (GANPIPE_BENCH_NO_TRAIN)",
        "data": "ring8",
        "model": {"architecture": "mlp", "latent_dim": 16, "width": 8},
        "loss": {"name": {"choice": ["hinge", "ns"]}},
        "optimizer": {"name": "adam", "lr_g": {"loguniform": [5e-4, 2e-3]}, "lr_d": {"loguniform": [5e-4, 2e-3]},
                      "beta1": {"uniform": [0.3, 0.7]}},
        "train": {"steps": reports * EVERY, "batch_size": 64},
        "eval": {"every": EVERY},
        "search": {"num_samples": trials, "sampler": "tpe", "objectives": ["mode_tv"],
                   "max_concurrent": concurrency, "scheduler": {"name": "none"}},
        "resources": {"cpu": min(1.0, CPUS / concurrency), "gpu": 0},  # `concurrency` trials fit at once
    }


def count_rows(pg_uri: str, experiment: str) -> dict:
    """Rows of the experiment's runs in MLflow's tables, read in PostgreSQL itself."""
    import psycopg

    child = ("SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
             "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId' WHERE e.name = %(e)s")
    every = ("SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
             "WHERE e.name = %(e)s")
    queries = {
        "runs": f"SELECT count(*) FROM ({every}) x",
        "child_runs": f"SELECT count(*) FROM ({child}) x",
        "child_metrics": f"SELECT count(*) FROM metrics WHERE run_uuid IN ({child})",
        "child_metric_points": f"SELECT count(*) FROM (SELECT DISTINCT run_uuid, key, step FROM metrics "
                               f"WHERE run_uuid IN ({child})) x",
        "child_latest_metrics": f"SELECT count(*) FROM latest_metrics WHERE run_uuid IN ({child})",
        "child_params": f"SELECT count(*) FROM params WHERE run_uuid IN ({child})",
        "child_tags": f"SELECT count(*) FROM tags WHERE run_uuid IN ({child})",
        "metrics": f"SELECT count(*) FROM metrics WHERE run_uuid IN ({every})",
        "latest_metrics": f"SELECT count(*) FROM latest_metrics WHERE run_uuid IN ({every})",
        "params": f"SELECT count(*) FROM params WHERE run_uuid IN ({every})",
        "tags": f"SELECT count(*) FROM tags WHERE run_uuid IN ({every})",
    }
    with psycopg.connect(pg_uri) as conn:
        found = {name: conn.execute(q, {"e": experiment}).fetchone()[0] for name, q in queries.items()}
        found["child_metric_keys"] = sorted(r[0] for r in conn.execute(
            f"SELECT DISTINCT key FROM metrics WHERE run_uuid IN ({child})", {"e": experiment}))
        found["child_runs_by_status"] = dict(conn.execute(
            f"SELECT status, count(*) FROM runs WHERE run_uuid IN ({child}) GROUP BY status", {"e": experiment}))
    return found


# ---- one mode, in its own process ------------------------------------------------------------
def child(args) -> None:
    """Run the sweep through ganpipe.tune.driver.run_sweep, timing Tuner.fit() from the driver's own calls
    around it (build_tuner returns just before fit(), finish_sweep is called just after)."""
    import ganpipe.tune.driver as driver
    from ganpipe.preflight import load_checked_sweep
    from ganpipe.tune.bench import NoTrainTrainer
    from ganpipe.tune.sweep_run import end_sweep_run

    path = Path(args.sweep)
    sweep = load_checked_sweep(str(path))
    experiment = f"tracking-scale-{args.child}"
    out: dict = {"mode": args.child}
    real_build, real_finish = driver.build_tuner, driver.finish_sweep

    def clock() -> tuple[float, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)  # this process: every thread of the driver
        return time.perf_counter(), ru.ru_utime + ru.ru_stime

    def others() -> dict[str, float]:
        """CPU seconds of the processes below the driver (Ray's), by kind."""
        kinds = {"ray_system": 0.0, "trial_workers": 0.0, "other": 0.0}
        for pid in descendants(os.getpid()):
            cmd = cmdline(pid)
            kind = ("trial_workers" if "default_worker" in cmd or cmd.startswith("ray::")
                    else "ray_system" if any(w in cmd for w in ("gcs_server", "raylet", "dashboard", "log_monitor",
                                                                "monitor.py", "runtime_env"))
                    else "other")
            kinds[kind] += cpu_seconds(pid, with_reaped=False)
        return kinds

    def build_tuner(*a, **k):
        tuner = real_build(*a, **k)
        out["_start"], out["_others0"], out["_threads0"] = clock(), others(), thread_cpu(os.getpid())
        return tuner

    def finish_sweep(sweep_, results, run, exp_dir, seconds, *a, **k):
        (t0, c0), (t1, c1) = out.pop("_start"), clock()
        o0, o1 = out.pop("_others0"), others()
        h0, h1 = out.pop("_threads0"), thread_cpu(os.getpid())
        n = sum(len(r.metrics_dataframe) for r in results if r.metrics_dataframe is not None)
        out.update(fit_wall_s=t1 - t0, driver_cpu_s=c1 - c0, results=n,
                   driver_cpu_ms_per_result=1000 * (c1 - c0) / n, fit_wall_ms_per_result=1000 * (t1 - t0) / n,
                   trial_errors=sum(1 for r in results if r.error),
                   ray_cpu_s={k_: round(o1[k_] - o0.get(k_, 0.0), 2) for k_ in o1},
                   # which of the driver's threads spent it (threads that ended during fit() are not here)
                   driver_thread_cpu_ms_per_result=dict(sorted(
                       ((k_, round(1000 * (h1[k_] - h0.get(k_, 0.0)) / n, 3)) for k_ in h1
                        if h1[k_] - h0.get(k_, 0.0) > 0), key=lambda kv: -kv[1])))
        if args.child == "off":  # nothing to report on: no child runs
            end_sweep_run(run, "finished")
            return "finished"
        out["rows_after_fit"] = count_rows(args.pg, experiment)
        t2 = time.perf_counter()
        ended = real_finish(sweep_, results, run, exp_dir, seconds, *a, **k)
        out["end_of_sweep_s"] = time.perf_counter() - t2
        return ended

    driver.build_tuner, driver.finish_sweep = build_tuner, finish_sweep
    opts = driver.SweepOptions(tracking_uri=args.uri, storage=str(Path(args.work) / f"ray_results-{args.child}"),
                               num_cpus=CPUS, experiment=experiment, promote=False, resume_hint=False)
    if args.profile:  # where the driver's time goes (its main thread runs Tune's controller loop)
        import cProfile

        profile = cProfile.Profile()
        outcome = profile.runcall(driver.run_sweep, sweep, path.read_text(), opts)
        profile.dump_stats(args.profile)
    else:
        outcome = driver.run_sweep(sweep, path.read_text(), opts)
    out["exit_code"] = outcome.exit_code
    if args.child == "on":
        out["rows_final"] = count_rows(args.pg, experiment)
    trainer = NoTrainTrainer(sweep.trial, objectives=sweep.search.objectives)
    # what one evaluation logs: the trainer's metrics + threads + best_objective (ganpipe.tune.trainable)
    out["metric_keys"] = sorted([*trainer._metrics(EVERY), "threads", "best_objective"])
    out["params_per_trial"] = len(sweep.space)
    Path(args.child_out).write_text(json.dumps(out, indent=1))


# ---- the benchmark -------------------------------------------------------------------------
def expected_rows(trials: int, reports: int, keys: int, params: int) -> dict:
    return {"child_runs": trials, "child_metrics": trials * reports * keys,
            "child_metric_points": trials * reports * keys, "child_latest_metrics": trials * keys,
            "child_params": trials * params}


def run_mode(mode: str, args, work: Path, sweep: Path, uri: str, pg: str, watched: dict[str, int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(GANPIPE_BENCH_NO_TRAIN="1", GANPIPE_BENCH_NO_TRACKING="1" if mode == "off" else "0",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    child_out = work / f"{mode}.json"
    before = {name: tree_cpu(pid) for name, pid in watched.items()}
    t0 = time.perf_counter()
    with open(work / f"driver-{mode}.log", "w") as log:
        profile = ["--profile", str(Path(args.profile).resolve())] if args.profile and mode == args.modes[0] else []
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--sweep", str(sweep), "--uri", uri,
                               "--pg", pg, "--work", str(work), "--child-out", str(child_out), *profile],
                              cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (work / f"driver-{mode}.log").read_text()[-4000:]
        raise RuntimeError(f"the {mode} sweep exited {proc.returncode}:\n{tail}")
    data = json.loads(child_out.read_text())
    data["process_wall_s"] = wall  # Ray start, the sweep's run, fit(), the end of the sweep, Ray shutdown
    data["service_cpu_s"] = {name: round(tree_cpu(pid) - before[name], 2) for name, pid in watched.items()}
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--reports", type=int, default=100, help="evaluations (Tune results) per trial")
    p.add_argument("--tiny", action="store_true", help=f"the CI size: {TINY['trials']} trials x {TINY['reports']}")
    p.add_argument("--modes", nargs="+", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--workers", type=int, default=1, help="MLflow server workers (`ganpipe server --workers`)")
    p.add_argument("--concurrency", type=int, default=2,
                   help=f"trials at once: search.max_concurrent, resources.cpu = {CPUS} / this (at most 1)")
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, Tune results)")
    p.add_argument("--profile", help="cProfile the driver of the first mode into this file (a pstats dump)")
    for private in ("--child", "--sweep", "--uri", "--pg", "--work", "--child-out"):
        p.add_argument(private, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.tiny:
        args.trials, args.reports = TINY["trials"], TINY["reports"]

    import yaml

    work = Path(tempfile.mkdtemp(prefix="gp-scale-", dir="/tmp"))  # short: Ray's socket paths
    os.chmod(work, 0o755)
    sweep = work / "tracking-scale.yaml"
    sweep.write_text(yaml.safe_dump(sweep_yaml(args.trials, args.reports, args.concurrency), sort_keys=False))
    report = {"trials": args.trials, "reports_per_trial": args.reports, "concurrency": args.concurrency,
              "mlflow_server_workers": args.workers,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "modes": {}}
    try:
        with postgres(work) as (pg, postmaster), mlflow_server(work, pg, args.workers) as (uri, server):
            for mode in args.modes:
                print(f"{mode}: {args.trials} trials x {args.reports} reports ...", flush=True)
                report["modes"][mode] = run_mode(mode, args, work, sweep, uri, pg,
                                                 {"mlflow_server": server, "postgresql": postmaster})
                m = report["modes"][mode]
                print(f"  fit {m['fit_wall_s']:.1f} s, {m['results']} results, driver "
                      f"{m['driver_cpu_ms_per_result']:.2f} ms CPU/result", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    modes = report["modes"]
    if "on" in modes:
        on = modes["on"]
        expected = expected_rows(args.trials, args.reports, len(on["metric_keys"]), on["params_per_trial"])
        report["expected_rows"] = expected
        report["exact"] = {when: all(on[when][k] == v for k, v in expected.items())
                           for when in ("rows_after_fit", "rows_final")}
        report["results_expected"] = args.trials * args.reports
    if "on" in modes and "off" in modes:
        report["fit_wall_ratio_on_over_off"] = modes["on"]["fit_wall_s"] / modes["off"]["fit_wall_s"]
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if all(report.get("exact", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
