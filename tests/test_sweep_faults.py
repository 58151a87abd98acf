"""Whole sweeps and promotions against a real `mlflow server` behind the loopback fault proxy (tests/faultproxy.py):
`ganpipe sweep` runs as its own process on a local Ray (2 CPUs), 2 tiny ring8 trials, and the proxy fails part of
what it sends once the first evaluation is in MLflow.

MLflow's own HTTP client retries 408/429/5xx and dropped connections (~4 min by default); here it retries twice,
at once and 2 s later, so a window of a second is crossed by MLflow's retries and a longer one reaches ganpipe's
own (the trial's background sender, tracking.RetryingSender).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from faultproxy import FaultProxy
from services import sqlite_mlflow_server

from ganpipe import cli, promote, tracking
from ganpipe.config.schema import PromoteConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]  # each sweep also stops at 420 s

NAME = "faults"  # the sweep, its experiment and its registered model
SWEEP = {
    "name": NAME,
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32},
    "loss": {"name": "ns"},
    "optimizer": {"lr_g": {"loguniform": [3e-4, 3e-3]}, "lr_d": 1e-3},
    "train": {"steps": 300, "batch_size": 64},
    "eval": {"every": 50, "num_samples": 500},
    "search": {"num_samples": 2, "sampler": "random", "seed": 1, "max_concurrent": 2, "scheduler": {"name": "none"}},
    "resources": {"cpu": 1},
}
MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}
NOT_MLFLOW_METRICS = {"restarted_at_step"}  # logged by a retried trial only


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` (sqlite backend) for the module; yields its port."""
    yield from sqlite_mlflow_server(tmp_path_factory)


def direct(port: int):
    """A client that bypasses the proxy: what the server really holds."""
    return tracking.client(f"http://127.0.0.1:{port}")


def first_evaluation_logged(port: int, experiment: str) -> bool:
    c = direct(port)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return False
    kids = [r for r in c.search_runs([exp.experiment_id]) if tracking.PARENT_TAG in r.data.tags]
    return any(c.get_metric_history(r.info.run_id, "fid") for r in kids)


def sweep(folder: Path, url: str, experiment: str, port: int, faults, timeout: float = 420, changes=None, **env):
    """`ganpipe sweep` through the proxy at `url`; faults() is called once the first evaluation is in MLflow.
    Returns (exit code, output, seconds from the faults to the exit)."""
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "tracking": {"experiment": experiment}, **(changes or {})}))
    cmd = [sys.executable, "-m", "ganpipe.cli", "sweep", str(path), "--num-cpus", "2", "--tracking-uri", url]
    log = (folder / "sweep.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CI": "1", **MLFLOW_RETRIES, **env})
    try:
        deadline = time.monotonic() + timeout
        while not first_evaluation_logged(port, experiment):
            assert proc.poll() is None, (folder / "sweep.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no evaluation reached MLflow"
            time.sleep(0.5)
        faults()
        started = time.monotonic()
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
        return code, (folder / "sweep.log").read_text(), time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def trials_of(folder: Path) -> list[list[dict]]:
    """Each trial's results as Tune recorded them (result.json, one report a line)."""
    files = sorted(folder.glob("ray_results/*/train_trial_*/result.json"))
    return [[json.loads(line) for line in f.read_text().splitlines() if line.strip()] for f in files]


def children(port: int, experiment: str) -> tuple[list, list]:
    """(parent runs, child runs) of the experiment, read past the proxy."""
    c = direct(port)
    runs = c.search_runs([c.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return ([r for r in runs if tracking.PARENT_TAG not in r.data.tags],
            [r for r in runs if tracking.PARENT_TAG in r.data.tags])


# ---- a window of faults mid-sweep: nothing lost, nothing twice, nothing left RUNNING -----------------------
@pytest.fixture(scope="module")
def swept(server, tmp_path_factory):
    """One sweep through a window of faults, from its first evaluation on:
    - 0-1 s: every request answered 503 (MLflow's own retries cross it: trials and driver alike);
    - 1-7 s, metric writes (log-batch): dropped connections until 4 s, then 503 until 7 s: longer than MLflow's
      retries, so the trials' senders retry (a trial waits up to 10 s per evaluation for its sender);
    - from 7 s: the next 2 metric writes done but their answers lost (MLflow's client resends the same batch);
      every answer 1 s late until 10 s."""
    folder = tmp_path_factory.mktemp("swept")
    with FaultProxy(server) as proxy:
        def window():
            proxy.fail(503, seconds=1)
            proxy.fail("reset", match="/runs/log-batch", after=1, seconds=3)
            proxy.fail(503, match="/runs/log-batch", after=4, seconds=3)
            proxy.fail("lost", match="/runs/log-batch", times=2, after=7)
            proxy.fail("slow", delay=1.0, after=7, seconds=3)

        code, out, seconds = sweep(folder, proxy.url, NAME, server, window)
        seen = Counter(done for _, _, done in proxy.seen)
    return {"folder": folder, "code": code, "out": out, "seconds": seconds, "seen": seen}


def test_a_fault_window_mid_sweep_loses_and_doubles_no_metric(server, swept):
    out = swept["out"]
    assert swept["code"] == 0, out[-4000:]
    assert {"503", "lost", "reset", "slow"} <= set(swept["seen"]), swept["seen"]  # the window did happen
    assert "MLflow unreachable for run" in out, out[-4000:]  # ... and reached ganpipe's own retries

    c = direct(server)
    parents, kids = children(server, NAME)
    assert [p.info.status for p in parents] == ["FINISHED"]
    trials = trials_of(swept["folder"])
    assert len(trials) == 2 and len(kids) == 2, (len(trials), [k.info.run_name for k in kids])
    assert all(k.info.status == "FINISHED" for k in kids), [(k.info.run_name, k.info.status) for k in kids]
    for reports in trials:
        run_id = reports[0]["mlflow_run_id"]
        (run,) = [k for k in kids if k.info.run_id == run_id]
        tune_steps = {r["step"] for r in reports}
        assert max(tune_steps) == SWEEP["train"]["steps"]
        tune_values = {(k, r["step"]): r[k] for r in reports for k in r}
        for key in set(run.data.metrics) - NOT_MLFLOW_METRICS:
            history = c.get_metric_history(run_id, key)
            steps = [m.step for m in history]
            assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {sorted(steps)}"
            assert set(steps) == tune_steps, f"{key}: MLflow {sorted(steps)}, Tune {sorted(tune_steps)}"
            for m in history:
                assert m.value == pytest.approx(tune_values[(key, m.step)], rel=1e-9, abs=1e-12), (key, m.step)
        pngs = {a.path for a in c.list_artifacts(run_id, "samples")}
        assert pngs == {f"samples/step-{s:07d}.png" for s in tune_steps}


# ---- a permanent refusal mid-sweep: the trials fail with the reason, the sweep ends, in bounded time ------
def test_a_permanent_refusal_mid_sweep_fails_the_trials_with_the_reason_in_bounded_time(server, tmp_path):
    """From the first evaluation on, the server refuses every metric write (403, e.g. a token that lost its
    write permission). Each trial fails at its next evaluation (a 403 is never retried; GANPIPE_TRACKING_RETRY_S
    would bound a 5xx). No retry from the checkpoint here (failure.max_failures: 0), to keep it short; one
    would fail at its start, writing to its run. The sweep exits 1 (every trial failed) within a bound,
    nothing stays RUNNING, and each trial's run says why."""
    with FaultProxy(server) as proxy:
        code, out, seconds = sweep(tmp_path, proxy.url, "refused", server,
                                   lambda: proxy.fail(403, match="/runs/log-batch"),
                                   changes={"failure": {"max_failures": 0}}, GANPIPE_TRACKING_RETRY_S="5")
    assert code == 1, out[-4000:]
    assert seconds < 120, seconds
    assert "every trial failed (2)" in out, out[-4000:]
    assert "Traceback" not in out.split("every trial failed")[-1], out[-4000:]
    parents, kids = children(server, "refused")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert len(kids) == 2
    for kid in kids:
        assert kid.info.status == "FAILED", (kid.info.run_name, kid.info.status)
        reason = kid.data.tags[tracking.REASON_TAG]
        assert "refused a write" in reason and "403" in reason, reason


# ---- promotion: a failed read moves nothing; a window registers one version -------------------------------
def versions(port: int) -> list[str]:
    return sorted(v.version for v in direct(port).search_model_versions(f"name = '{NAME}'"))


def alias(port: int, name: str) -> str | None:
    return direct(port).get_registered_model(NAME).aliases.get(name)


def ganpipe_promote(url: str, capsys) -> tuple[int, str, str]:
    """`ganpipe promote --experiment faults` in this process: (exit code, stdout, stderr)."""
    code = cli.main(["promote", "--experiment", NAME, "--tracking-uri", url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def ranked(server, swept, tmp_path) -> list:
    """The sweep's two trials as promotion ranks them; the runner-up registered as champion (once per module),
    through ganpipe's own registration."""
    assert swept["code"] == 0, swept["out"][-3000:]
    uri = f"http://127.0.0.1:{server}"
    c = tracking.client(uri)
    parent = tracking.latest_run(c, c.get_experiment_by_name(NAME).experiment_id, "sweep")
    objectives = json.loads(tracking.read_text_artifact(c, parent.info.run_id, "sweep_config.json",
                                                        tmp_path))["search"]["objectives"]
    cands, _ = promote.shortlist(uri, PromoteConfig(), objectives, [parent.info.run_id])
    assert len(cands) == 2
    if not versions(server):
        decision = promote.register(c, uri, NAME, cands[1], [], objectives)
        assert decision.outcome == promote.CHAMPION, decision.message
    return cands


@pytest.mark.parametrize("fault, read", [
    (503, "/registered-models/get"),  # the champion alias read
    (401, "/model-versions/search"),  # is this checkpoint registered already?
    ("reset", "/runs/search"),  # the sweep's run and its trials
])
def test_promotion_stops_on_a_failed_read_and_moves_nothing(server, ranked, monkeypatch, capsys, fault, read):
    """With a champion registered (the sweep's runner-up), `ganpipe promote` of the sweep's winner meets a read
    that fails for good: exit 1 in one line, no version registered, the champion alias where it was."""
    before = versions(server), alias(server, promote.CHAMPION)
    assert len(before[0]) == 1, "runs before the window test, which registers the winner"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    with FaultProxy(server) as proxy:
        proxy.fail(fault, match=read)
        code, out, err = ganpipe_promote(proxy.url, capsys)
        assert any(read in path and done == str(fault) for _, path, done in proxy.seen), proxy.seen
    assert code == 1, out + err
    assert err.startswith("promotion stopped: ") and len(err.strip().splitlines()) == 1, err
    assert (str(fault) if fault != "reset" else "onnection") in err, err
    assert (versions(server), alias(server, promote.CHAMPION)) == before


def test_promotion_through_a_transient_window_registers_one_version(server, ranked, monkeypatch, capsys):
    """Every registry call answered 503 for 3 s (retries 0, 2 and 4 s apart here cross it: MLflow's own for the
    reads, ganpipe's for the creates, which MLflow 3.18 no longer sends again), and the new version's creation
    answered 504 after the server made it (a gateway that gave up waiting). Exactly one new version, from the
    winner's best checkpoint, with the alias its score earns; promoting again changes nothing."""
    before, champ = versions(server), alias(server, promote.CHAMPION)
    for key, value in {**MLFLOW_RETRIES, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}.items():
        monkeypatch.setenv(key, value)
    with FaultProxy(server) as proxy:
        proxy.fail(504, match="/model-versions/create", times=1, forward=True)
        proxy.fail(503, match="/registered-models/", seconds=3)
        proxy.fail(503, match="/model-versions/", seconds=3)
        code, out, err = ganpipe_promote(proxy.url, capsys)
        seen = Counter(done for _, _, done in proxy.seen)
    assert code == 0, out + err
    assert seen["503"] and seen["504 after forwarding"], seen
    new = sorted(set(versions(server)) - set(before))
    assert len(new) == 1, f"registered {new}: {out}{err}"
    version = direct(server).get_model_version(NAME, new[0])
    assert version.tags[tracking.SOURCE_TAG] == ranked[0].source
    beats = ranked[0].score < ranked[1].score
    assert alias(server, promote.CHAMPION) == (new[0] if beats else champ)
    assert alias(server, promote.CHALLENGER) == (None if beats else new[0])

    code, out, err = ganpipe_promote(f"http://127.0.0.1:{server}", capsys)
    assert code == 0 and f"is already version {new[0]} of {NAME}" in out, out + err
    assert versions(server) == sorted([*before, *new])
