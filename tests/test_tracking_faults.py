"""Tracking under faults, against real stores: a sqlite file, and a real `mlflow server` behind a loopback fault
proxy (tests/faultproxy.py) that answers 5xx or 401, drops connections, or answers slowly.

MLflow's own HTTP client retries 408/429/5xx and connection errors (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, ~4 min by
default, measured in the issue 20 report); these tests set it to 0 so that what is tested is ganpipe's handling."""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from faultproxy import FaultProxy
from services import sqlite_mlflow_server
from conftest import experiment_in

from ganpipe import tracking
from ganpipe.tracking import resend
from ganpipe.tracking import trial_run as trial_run_module

READS = ("/registered-models/", "/model-versions/")  # every registry read the promotion makes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` (sqlite backend), shared by this module's tests; yields its port."""
    yield from sqlite_mlflow_server(tmp_path_factory)


@pytest.fixture
def proxy(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's client gives up at once: ours decides
    with FaultProxy(server) as p:
        yield p


def parent(uri: str, experiment: str) -> dict:
    c = tracking.client(uri)
    experiment_id = (experiment_in(Path(uri.removeprefix("sqlite:///")).parent, c, experiment)  # beside the db
                     if uri.startswith("sqlite:///") else tracking.ensure_experiment(c, experiment))
    return {"uri": uri, "experiment_id": experiment_id,
            "parent_run_id": tracking.start_parent_run(c, experiment_id, "sweep", {})}


def trial_run(track: dict, trial_id: str) -> tracking.TrialRun:
    return tracking.TrialRun(track["uri"], track["experiment_id"], track["parent_run_id"], trial_id, trial_id,
                             {"lr": 1e-4}, {"lr": 1e-4})


def model_with_version(c, name: str, source_tag: str):
    c.create_registered_model(name)
    run_id = c.create_run(tracking.ensure_experiment(c, "models")).info.run_id
    return c.create_model_version(name, f"runs:/{run_id}/generator", run_id=run_id,
                                  tags={tracking.SOURCE_TAG: source_tag})


# ---- defect 1: a failed registry read is never "absent" ------------------------------------------------
def test_a_missing_model_or_alias_is_absent_in_a_sqlite_store(tmp_path):
    """MLflow answers a missing alias of an existing model with INVALID_PARAMETER_VALUE (not
    RESOURCE_DOES_NOT_EXIST): version_by_alias must still say None, not raise."""
    c = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert tracking.registered_model(c, "m") is None
    assert tracking.version_by_alias(c, "m", "champion") is None
    assert tracking.find_version(c, "m", "r@1") is None
    version = model_with_version(c, "m", "r@1")
    assert tracking.version_by_alias(c, "m", "champion") is None
    assert tracking.find_version(c, "m", "r@1").version == version.version
    c.set_registered_model_alias("m", "champion", version.version)
    assert tracking.version_by_alias(c, "m", "champion").version == version.version


@pytest.mark.integration
@pytest.mark.parametrize("fault", [503, 500, 401, 403, "reset"])
def test_a_failed_registry_read_raises_instead_of_saying_absent(proxy, fault):
    """Before: every MlflowException was "not found", so a 503 on the champion read gave "no champion yet"
    and the new version took the alias whatever its score; find_version said None and the checkpoint was
    registered twice."""
    c = tracking.client(proxy.url)
    name = f"m-{fault}"
    assert tracking.registered_model(c, name) is None  # absent over REST too (RESOURCE_DOES_NOT_EXIST)
    assert tracking.version_by_alias(c, name, "champion") is None
    version = model_with_version(c, name, "r@1")
    assert tracking.version_by_alias(c, name, "champion") is None  # the alias is absent (INVALID_PARAMETER_VALUE)
    c.set_registered_model_alias(name, "champion", version.version)
    assert tracking.version_by_alias(c, name, "champion").version == version.version

    for path in READS:
        proxy.fail(fault, match=path, method="GET")
    for read in (lambda: tracking.version_by_alias(c, name, "champion"),
                 lambda: tracking.registered_model(c, name),
                 lambda: tracking.find_version(c, name, "r@1")):
        with pytest.raises(tracking.TrackingUnavailable, match=f"could not read .*{name}"):
            read()
    proxy.clear()
    assert tracking.version_by_alias(c, name, "champion").version == version.version  # nothing moved


@pytest.mark.integration
def test_promote_stops_with_exit_1_in_one_line_when_the_store_fails(proxy, tmp_path, capsys):
    """`ganpipe promote` against a store that answers 503: exit 1 and one line, no traceback (before: an
    MlflowException traceback, or "no champion yet" once the reads got that far)."""
    from ganpipe import cli

    c = tracking.client(proxy.url)
    tracking.ensure_experiment(c, "faulty")
    proxy.fail(503, match="/experiments/")
    assert cli.main(["promote", "--experiment", "faulty", "--tracking-uri", proxy.url]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("promotion stopped: tracking store") and "503" in err, err


MLMODEL = "flavors: {}\nrun_id: r\nartifact_path: generator\nutc_time_created: '2024-01-01 00:00:00.000000'\n"


@pytest.mark.integration
@pytest.mark.parametrize("fault, match", [(503, "/mlflow-artifacts/"), (401, "/mlflow-artifacts/"),
                                          ("reset", "/mlflow-artifacts/"), (503, "/mlflow-artifacts/artifacts/")])
def test_a_failed_artifact_read_raises_instead_of_saying_absent(proxy, tmp_path, fault, match):
    """MLflow itself answers a download that failed (5xx, 401, a dropped connection) as RESOURCE_DOES_NOT_EXIST
    ("Failed to download artifacts from path ..."). Before: read_text_artifact said None and model_info
    ModelNotFound for it, so `ganpipe promote` called a sweep's parent run "no sweep's parent run" (exit 2).
    match "/mlflow-artifacts/artifacts/": the downloads fail, the listings (".../artifacts?path=") answer."""
    c = tracking.client(proxy.url)
    track = parent(proxy.url, f"artifacts-{fault}-{len(match)}")
    run_id, name = track["parent_run_id"], f"art-{fault}-{len(match)}"
    tracking.log_texts(c, run_id, {"sweep_config.json": "{}", "generator/MLmodel": MLMODEL})
    c.create_registered_model(name)
    c.create_model_version(name, f"runs:/{run_id}/generator", run_id=run_id)
    assert tracking.read_text_artifact(c, run_id, "sweep_config.json", tmp_path) == "{}"
    assert tracking.read_text_artifact(c, run_id, "generator/other.json", tmp_path) is None  # absent: None
    assert tracking.read_text_artifact(c, "0" * 32, "sweep_config.json", tmp_path) is None  # no such run
    for source in (f"models:/{name}/1", f"runs:/{run_id}/generator"):
        assert tracking.model_info(proxy.url, source).run_id == "r"
    for source in (f"models:/{name}/7", f"runs:/{run_id}/nothing", f"runs:/{'0' * 32}/generator"):
        with pytest.raises(tracking.ModelNotFound):
            tracking.model_info(proxy.url, source)

    proxy.fail(fault, match=match, method="GET")
    with pytest.raises(tracking.TrackingUnavailable, match=f"sweep_config.json of run {run_id}"):
        tracking.read_text_artifact(c, run_id, "sweep_config.json", tmp_path)
    for source in (f"models:/{name}/1", f"runs:/{run_id}/generator"):
        with pytest.raises(tracking.TrackingUnavailable, match="could not read model"):
            tracking.model_info(proxy.url, source)
    proxy.clear()
    assert tracking.read_text_artifact(c, run_id, "sweep_config.json", tmp_path) == "{}"


@pytest.mark.integration
def test_promote_stops_with_exit_1_when_the_sweep_config_cannot_be_downloaded(proxy, capsys):
    """Before: exit 2, "run ... is no sweep's parent run (it has no sweep_config.json)", for a 503."""
    from ganpipe import cli

    c = tracking.client(proxy.url)
    experiment_id = tracking.ensure_experiment(c, "no-config")
    run_id = tracking.start_parent_run(c, experiment_id, "sweep", {"ganpipe.kind": "sweep"})
    tracking.log_texts(c, run_id, {"sweep_config.json": "{}"})
    proxy.fail(503, match="sweep_config.json")
    assert cli.main(["promote", "--experiment", "no-config", "--tracking-uri", proxy.url]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("promotion stopped: ") and "sweep_config.json" in err and "503" in err, err


@pytest.mark.integration
def test_sample_stops_with_exit_1_when_the_model_cannot_be_read(proxy, capsys):
    """Before: exit 2, "not a model MLflow can open (TrackingUnavailable: ...)", as if the source were wrong."""
    from ganpipe import cli

    c = tracking.client(proxy.url)
    track = parent(proxy.url, "sample-faulty")
    tracking.log_texts(c, track["parent_run_id"], {"generator/MLmodel": MLMODEL})
    proxy.fail(503, match="/mlflow-artifacts/", method="GET")
    source = f"runs:/{track['parent_run_id']}/generator"
    assert cli.main(["sample", source, "--tracking-uri", proxy.url]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("sampling stopped: ") and "503" in err, err


# ---- defect 2: the sender retries what is transient, for a bounded time, and fails on the rest ---------
@pytest.mark.integration
@pytest.mark.parametrize("fault", [401, 403, 400])
def test_a_permanent_error_fails_the_trial_run_at_once(proxy, fault):
    """Before: the sender retried a 401 forever; flush() timed out and its False was ignored."""
    run = trial_run(parent(proxy.url, f"perm-{fault}"), "t1")
    proxy.fail(fault, match="/runs/log-batch")
    for step in (1, 2, 3):
        run.log_eval(step, {"fid": 1.0 / step}, None)
    started = time.monotonic()
    with pytest.raises(tracking.TrackingFailed, match=f"refused a write to run {run.run_id}.*{fault}"):
        run.flush(10)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while run.sender.queue.unfinished_tasks and time.monotonic() < deadline:  # the rest is dropped, not stuck
        time.sleep(0.05)
    assert run.sender.queue.unfinished_tasks == 0
    run.close()
    assert not run.sender.thread.is_alive()


def test_a_write_to_a_deleted_run_fails_the_trial_run(tmp_path):
    """A real permanent error from a sqlite store: the run was deleted (MLflow: INVALID_PARAMETER_VALUE)."""
    track = parent(f"sqlite:///{tmp_path / 'mlflow.db'}", "deleted")
    run = trial_run(track, "t1")
    tracking.delete_run(tracking.client(track["uri"]), run.run_id)
    run.log_eval(1, {"fid": 1.0}, None)
    with pytest.raises(tracking.TrackingFailed, match="active"):
        run.flush(10)
    run.close()


@pytest.mark.integration
@pytest.mark.parametrize("fault", [503, 429, "reset"])
def test_a_transient_window_is_retried_and_nothing_is_lost_or_doubled(proxy, fault):
    track = parent(proxy.url, f"window-{fault}")
    run = trial_run(track, "t1")
    proxy.fail(fault, match="/runs/log-batch", seconds=2)
    for step in (1, 2, 3):
        run.log_eval(step, {"fid": 1.0 / step}, None)
    assert run.flush(30)
    run.close()
    history = tracking.client(track["uri"]).get_metric_history(run.run_id, "fid")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert any(done == str(fault) for _, path, done in proxy.seen if "log-batch" in path)


@pytest.mark.integration
@pytest.mark.parametrize("fault", [503, "reset"])
def test_transient_failures_for_longer_than_the_limit_fail_the_trial_run(proxy, monkeypatch, fault):
    """Before: retried forever. The limit is RETRY_FOR (10 min; $GANPIPE_TRACKING_RETRY_S), 2 s here."""
    monkeypatch.setattr(trial_run_module, "RETRY_FOR", 2.0)
    run = trial_run(parent(proxy.url, f"long-{fault}"), "t1")
    proxy.fail(fault, match="/runs/log-batch")
    started = time.monotonic()  # before the sender's first attempt: the limit counts from that attempt
    run.log_eval(1, {"fid": 1.0}, None)
    with pytest.raises(tracking.TrackingFailed, match=r"failed writes to run .* for \d+ s \(the limit is 2 s"):
        run.flush(15)
    assert 2 <= time.monotonic() - started < 6
    run.close()


LOST_OR_NOT = {"lost": "lost", 504: "504 after forwarding", 503: "503"}  # how the proxy logs each fault


@pytest.mark.integration
@pytest.mark.parametrize("fault", list(LOST_OR_NOT))
def test_a_create_whose_answer_is_lost_leaves_one_trial_run(proxy, monkeypatch, fault):
    """The server makes the run and its answer is lost (dropped, or a gateway's 504), or it answers 503 without
    making it. MLflow's client (3.18) gives a create up at the first such failure; before 3.18 it sent it again.
    Before: a failed trial, or two child runs of one trial, the first left RUNNING with no metrics. Now: the run
    is looked for, and made again only if it is not there (resend.create_once)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    track = parent(proxy.url, f"lost-create-{fault}")
    proxy.fail(fault, match="/runs/create", times=1, forward=fault == 504)
    run = trial_run(track, "t1")
    run.close()
    assert any(done == LOST_OR_NOT[fault] for _, path, done in proxy.seen if "/runs/create" in path)
    c = tracking.client(proxy.url)
    kids = tracking.children(c, track["experiment_id"], track["parent_run_id"])
    assert [k.info.run_id for k in kids] == [run.run_id]
    assert kids[0].data.params == {"lr": "0.0001"}


@pytest.mark.integration
@pytest.mark.parametrize("fault", list(LOST_OR_NOT))
def test_a_parent_run_whose_create_answer_is_lost_is_made_once(proxy, monkeypatch, fault):
    """The same for a sweep's (or pipeline's, or stage's) own run: before, the resent create made a second
    parent run and the first stayed RUNNING for good (MLflow before 3.18), or the sweep stopped (3.18)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    c = tracking.client(proxy.url)
    experiment_id = tracking.ensure_experiment(c, f"lost-parent-{fault}")
    proxy.fail(fault, match="/runs/create", times=1, forward=fault == 504)
    run_id = tracking.start_parent_run(c, experiment_id, "sweep", {"ganpipe.kind": "sweep"})
    assert any(done == LOST_OR_NOT[fault] for _, path, done in proxy.seen if "/runs/create" in path)
    runs = c.search_runs([experiment_id])  # active runs only: a deleted copy is not among them
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].data.tags["ganpipe.kind"] == "sweep"


@pytest.mark.integration
@pytest.mark.parametrize("fault", list(LOST_OR_NOT))
def test_an_experiment_whose_create_answer_is_lost_is_made_once(proxy, monkeypatch, fault):
    """A sweep's first run makes its experiment: a lost answer stopped the sweep (3.18), or the create sent again
    met RESOURCE_ALREADY_EXISTS (before 3.18)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    c = tracking.client(proxy.url)
    proxy.fail(fault, match="/experiments/create", times=1, forward=fault == 504)
    experiment_id = tracking.ensure_experiment(c, f"lost-experiment-{fault}")
    assert any(done == LOST_OR_NOT[fault] for _, path, done in proxy.seen if "/experiments/create" in path)
    assert c.get_experiment_by_name(f"lost-experiment-{fault}").experiment_id == experiment_id


@pytest.mark.integration
def test_a_create_failing_for_longer_than_its_resends_raises(proxy, monkeypatch):
    """Resends are MLflow's own schedule (MLFLOW_HTTP_REQUEST_MAX_RETRIES): a create refused each time (503,
    nothing made) raises the last failure after 1 + 2 attempts, and leaves nothing behind."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    c = tracking.client(proxy.url)
    experiment_id = tracking.ensure_experiment(c, "refused-parent")
    proxy.fail(503, match="/runs/create")
    with pytest.raises(MlflowException, match="503"):
        tracking.start_parent_run(c, experiment_id, "sweep", {})
    assert [done for _, path, done in proxy.seen if "/runs/create" in path] == ["503"] * 3
    assert c.search_runs([experiment_id]) == []


def unavailable_create(calls: list):
    def create():
        calls.append("create")
        raise MlflowException("injected: the server is busy", error_code=TEMPORARILY_UNAVAILABLE)  # a 503
    return create


@pytest.mark.parametrize("mlflow_resends", [False, True])
def test_who_sends_a_failed_create_again_depends_on_the_mlflow_version(monkeypatch, mlflow_resends):
    """MLflow before 3.18 sent every failed request again itself (the Docker images pin 3.17.2): there a failed
    create is only looked for, so the two schedules do not multiply; from 3.18 ganpipe resends it."""
    monkeypatch.setattr(resend, "MLFLOW_RESENDS_CREATES", mlflow_resends)
    for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                       "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}.items():
        monkeypatch.setenv(key, value)
    calls = []
    with pytest.raises(MlflowException, match="busy"):
        resend.create_once(unavailable_create(calls), find=lambda: calls.append("find"))
    assert calls == (["create", "find"] if mlflow_resends else ["create", "find"] * 3)
    calls.clear()
    assert resend.create_once(unavailable_create(calls), find=lambda: "made") == "made" and calls == ["create"]


# ---- defect 3: a closed TrialRun leaves no thread behind ------------------------------------------------
def test_trial_runs_closed_at_trial_end_leave_no_threads(tmp_path):
    """With reuse_actors=True one worker runs trial after trial: before, each TrialRun left its sender thread."""
    track = parent(f"sqlite:///{tmp_path / 'mlflow.db'}", "threads")
    warm = trial_run(track, "warm-up")  # MLflow's own lazily started machinery, once per process
    warm.close()
    before = set(threading.enumerate())
    for i in range(10):
        run = trial_run(track, f"t{i}")
        run.log_eval(1, {"fid": 1.0}, None)
        assert run.flush(30)
        run.close()
    started = [t.name for t in threading.enumerate() if t not in before]  # (threads of earlier tests may end)
    assert not started, started


# ---- a sample PNG's copy is deleted once sent, and at close when it never will be ------------------------
def queue_png(run, tmp_path, step: int) -> Path:
    """A trial's evaluation with its sample PNG, which the trial deletes once queued (ganpipe.tune.trainable)."""
    png = tmp_path / f"step-{step:07d}.png"
    png.write_bytes(b"\x89PNG not a real image: MLflow stores any file")
    run.log_eval(step, {"fid": 1.0 / step}, png)
    png.unlink()
    return png


def png_folders(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.glob("ganpipe-png-*"))


def test_a_sent_png_reaches_the_run_and_its_copy_is_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    track = parent(f"sqlite:///{tmp_path / 'mlflow.db'}", "png-sent")
    run = trial_run(track, "t1")
    png = queue_png(run, tmp_path, 1)
    assert run.flush(30)
    run.close()
    sent = tracking.client(track["uri"]).list_artifacts(run.run_id, "samples")
    assert [a.path for a in sent] == [f"samples/{png.name}"]
    assert png_folders(tmp_path / "tmp") == []


def test_pngs_that_will_never_be_sent_are_deleted_at_close(tmp_path, monkeypatch):
    """The sender gave up (a permanent error drops its queue): before, each queued PNG's copy stayed in the temp
    folder for good, one per evaluation, in a process that lives on (reuse_actors)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    track = parent(f"sqlite:///{tmp_path / 'mlflow.db'}", "png-dropped")
    run = trial_run(track, "t1")
    tracking.delete_run(tracking.client(track["uri"]), run.run_id)
    for step in (1, 2):
        queue_png(run, tmp_path, step)
    assert len(png_folders(tmp_path / "tmp")) == 2
    with pytest.raises(tracking.TrackingFailed, match="active"):
        run.flush(10)
    assert len(png_folders(tmp_path / "tmp")) == 2  # dropped, not sent: only close() knows nothing will send them
    run.close()
    assert png_folders(tmp_path / "tmp") == []


# ---- defect 5: a stage that raises ends its run FAILED with the reason --------------------------------
def test_a_stage_that_raises_ends_its_run_and_the_pipelines_failed(tmp_path):
    """A resumed pipeline whose done sweep stage's parent run is gone from the store: the promote stage raises
    reading it. Before, the stage's run was left RUNNING (only the pipeline's run was ended)."""
    from ganpipe.pipeline.config import load_pipeline
    from ganpipe.pipeline.runner import STATE_FILE, PipelineOptions, run_pipeline
    from ganpipe.tune.storage import Location

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "s", "data": "ring8", "train": {"steps": 10}}))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "p", "sweep": "s.yaml", "stages": [
        {"name": "broad", "kind": "sweep"}, {"name": "promote", "kind": "promote"}]}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    pipeline_run = tracking.start_parent_run(c, tracking.ensure_experiment(c, "p"), "p", {"ganpipe.kind": "pipeline"})
    folder = Location(str(tmp_path / "pipes")).stamped_folder("p")
    folder.mkdir()
    (folder / STATE_FILE).write_text(json.dumps({"run_id": pipeline_run, "stages": {"broad": {
        "kind": "sweep", "status": "done", "parent_run_id": "0" * 32, "overrides": []}}}))

    with pytest.raises(Exception, match="0{32}"):
        run_pipeline(load_pipeline(tmp_path / "p.yaml"),
                     PipelineOptions(tracking_uri=uri, storage=str(tmp_path / "pipes"), resume=True, num_cpus=1))
    (stage,) = [r for r in tracking.children(c, tracking.ensure_experiment(c, "p"), pipeline_run)]
    assert stage.data.tags["ganpipe.stage"] == "promote"
    assert stage.info.status == "FAILED", stage.info.status
    assert stage.data.tags[tracking.STATUS_TAG] == "failed"
    assert stage.data.tags[tracking.REASON_TAG].startswith("stage promote: ")
    assert tracking.get_run(c, pipeline_run).info.status == "FAILED"
