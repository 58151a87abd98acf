"""Child-run bookkeeping against a real sqlite MLflow store: one run per trial id, found again on retry;
a stopped sweep ends its running children; a killed driver's unsaved trials are retired."""
from types import SimpleNamespace

import pytest

from ganpipe import tracking
from ganpipe.tune.sweep_run import SweepRun, retire_unsaved_trials
from conftest import experiment_in


@pytest.fixture
def sweep_runs(tmp_path):
    """(client, track) with an experiment and a parent run in a fresh store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    experiment_id = experiment_in(tmp_path, c, "s")
    parent = tracking.start_parent_run(c, experiment_id, "sweep", {})
    return c, {"uri": uri, "experiment_id": experiment_id, "parent_run_id": parent}


def trial_run(track: dict, trial_id: str) -> tracking.TrialRun:
    return tracking.TrialRun(track["uri"], track["experiment_id"], track["parent_run_id"], trial_id, trial_id,
                             {"lr": 1e-4}, {"lr": 1e-4})


def test_a_retried_trial_continues_its_own_child_run(sweep_runs):
    c, track = sweep_runs
    first = trial_run(track, "t1")
    first.log_eval(100, {"fid": 3.0}, None)
    assert first.flush(30)
    tracking.end_run(c, first.run_id, "FAILED", "worker died")

    again = trial_run(track, "t1")  # the retry, in a new worker
    assert again.run_id == first.run_id
    assert c.get_run(again.run_id).info.status == "RUNNING"
    assert again.last_step == 100
    again.log_eval(100, {"fid": 99.0}, None)  # already logged before the retry: skipped
    again.log_eval(200, {"fid": 2.0}, None)
    assert again.flush(30)
    assert [(m.step, m.value) for m in c.get_metric_history(again.run_id, "fid")] == [(100, 3.0), (200, 2.0)]
    assert len(tracking.children(c, track["experiment_id"], track["parent_run_id"])) == 1


def test_a_stopped_sweep_ends_only_its_running_children(sweep_runs):
    c, track = sweep_runs
    done, running = trial_run(track, "t1"), trial_run(track, "t2")
    tracking.end_run(c, done.run_id, "FINISHED", ganpipe_status="finished")
    assert tracking.close_running_children(c, track["experiment_id"], track["parent_run_id"], "KILLED", "ctrl-c") == 1
    assert c.get_run(done.run_id).info.status == "FINISHED"
    killed = c.get_run(running.run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags[tracking.REASON_TAG] == "ctrl-c" and killed.data.tags[tracking.STATUS_TAG] == "killed"


def test_child_runs_of_trials_tune_never_saved_are_retired(sweep_runs):
    c, track = sweep_runs
    saved, unsaved = trial_run(track, "t1"), trial_run(track, "t2")
    unsaved.log_eval(100, {"fid": 5.0}, None)
    assert unsaved.flush(30)
    tune_trials = {"t1", "t3"}  # the trial ids Tune restored
    run = SweepRun(track["uri"], track["experiment_id"], track["parent_run_id"])

    assert retire_unsaved_trials(run, tune_trials) == 1
    kept = tracking.children(c, track["experiment_id"], track["parent_run_id"])
    assert [r.info.run_id for r in kept] == [saved.run_id]  # one child run per Tune trial
    gone = c.get_run(unsaved.run_id)  # deleted, still restorable
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert "1 evaluation(s) logged" in gone.data.tags[tracking.REASON_TAG]
    assert retire_unsaved_trials(run, tune_trials) == 0  # twice changes nothing


def test_a_sweep_whose_every_trial_errored_failed_and_a_stopped_one_was_interrupted():
    from ganpipe.tune.driver import EXIT_CODES, sweep_outcome

    def trials(*statuses):
        return [SimpleNamespace(status=s) for s in statuses]

    assert sweep_outcome(trials("TERMINATED", "ERROR"), 2, False) == "finished"  # one result is enough to rank
    assert sweep_outcome(trials("ERROR", "ERROR"), 2, False) == "failed"
    assert sweep_outcome(trials("TERMINATED", "RUNNING"), 2, False) == "interrupted"
    assert sweep_outcome(trials("TERMINATED"), 2, False) == "interrupted"  # a sample never created
    assert sweep_outcome(trials("ERROR", "ERROR"), 2, True) == "interrupted"  # Ctrl-C: resumable, not failed
    assert EXIT_CODES == {"finished": 0, "failed": 1, "interrupted": 130}


def test_resume_continues_the_sweep_as_it_was_started(tmp_path):
    """The sweep's folder keeps its --set, trial count and file hash; --resume rebuilds that sweep and refuses
    other --set, another count or a changed file (Tune would train the rest of the trials differently)."""
    import hashlib

    from ganpipe.config import ConfigError, load_sweep
    from ganpipe.tune.sweep_run import sweep_as_started

    path = tmp_path / "s.yaml"
    text = "name: s\ntrain: {steps: 500}\nsearch: {num_samples: 6}\n"
    path.write_text(text)
    state = {"overrides": ["train.steps=300"], "num_samples": 3, "sweep_sha256": hashlib.sha256(text.encode()).hexdigest()}
    sweep = sweep_as_started(load_sweep(path), text, [], None, state)
    assert (sweep.trial.train.steps, sweep.search.num_samples) == (300, 3)
    same = ["train.steps=300"]
    assert sweep_as_started(load_sweep(path, same), text, same, 3, state).trial.train.steps == 300
    for (overrides, num_samples), text_now, where in [
        ((["train.steps=400"], None), text, "--set"),
        (([], 5), text, "--num-samples"),
        (([], None), text + "# edited\n", str(path)),
    ]:
        with pytest.raises(ConfigError) as err:
            sweep_as_started(load_sweep(path), text_now, overrides, num_samples, state)
        assert [p.file for p in err.value.problems] == [where], err.value
    # a folder from before these were kept: resumed with what is given, as then
    old = sweep_as_started(load_sweep(path), text, [], 2, {"parent_run_id": "x"})
    assert (old.trial.train.steps, old.search.num_samples) == (500, 2)


def test_only_a_sweeps_own_stamped_folders_are_its_runs(tmp_path):
    from ganpipe.tune.storage import Location

    for name in ["ring8-20260101-000000", "ring8-long-20260101-000000", "ring8-20260102-000000", "ring8-x"]:
        (tmp_path / name).mkdir()
    assert [p.name for p in Location(str(tmp_path)).stamped("ring8")] == ["ring8-20260101-000000",
                                                                         "ring8-20260102-000000"]


def test_a_resumed_run_that_finishes_drops_the_interrupted_reason(tmp_path):
    c = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = c.create_run(tracking.ensure_experiment(c, "e")).info.run_id
    tracking.end_run(c, run_id, "KILLED", "interrupted; resume with --resume", "killed")
    tracking.reopen(c, run_id)
    assert c.get_run(run_id).data.tags[tracking.REASON_TAG].startswith("interrupted")  # a retry may read it
    tracking.end_run(c, run_id, "FINISHED", ganpipe_status="finished")
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and tracking.REASON_TAG not in run.data.tags
    assert run.data.tags[tracking.STATUS_TAG] == "finished"
    tracking.end_run(c, run_id, "FINISHED")  # nothing to drop: fine


def test_children_are_read_page_by_page(sweep_runs, monkeypatch):
    """search_runs answers one page; the closing, candidate and retire loops must see every child run."""
    from ganpipe.tracking import runs

    c, track = sweep_runs
    made = {trial_run(track, f"t{i}").run_id for i in range(5)}
    monkeypatch.setattr(runs, "PAGE", 2)  # 3 pages for 5 runs
    assert {r.info.run_id for r in tracking.children(c, track["experiment_id"], track["parent_run_id"])} == made
    assert tracking.close_running_children(c, track["experiment_id"], track["parent_run_id"], "KILLED", "x") == 5


def test_a_trials_child_run_is_found_by_its_trial_id(sweep_runs):
    """The driver's callbacks find a trial's run when the trial never reported (it failed first)."""
    import types

    c, track = sweep_runs
    made = trial_run(track, "t7")
    assert not any(isinstance(getattr(tracking, name), types.ModuleType) for name in tracking.__all__)
    found = tracking.find_trial_run(c, track["experiment_id"], track["parent_run_id"], "t7")
    assert found.info.run_id == made.run_id
    assert tracking.find_trial_run(c, track["experiment_id"], track["parent_run_id"], "t8") is None


def test_a_sweep_is_tagged_with_the_installed_ganpipe_version(tmp_path):
    """The parent run's ganpipe.version is the installed package's (it was "0": ganpipe had no __version__)."""
    from importlib.metadata import version

    from ganpipe.config import load_sweep
    from ganpipe.tune.provenance import sweep_tags

    path = tmp_path / "s.yaml"
    path.write_text("name: s\n")
    tags = sweep_tags(load_sweep(path), path.read_text(), tmp_path)
    assert tags["ganpipe.version"] == version("ganpipe") != "0"


def test_shareable_uri_keeps_paths_and_passwords_out_of_a_shared_page(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert tracking.shareable_uri(tracking.resolve_uri("sqlite:///mlflow.db")) == "sqlite:///mlflow.db"
    assert tracking.shareable_uri(f"sqlite:///{tmp_path}/runs/m.db") == "sqlite:///runs/m.db"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not under the working folder: under the home folder
    assert tracking.shareable_uri(f"sqlite:///{home}/x/m.db") == "sqlite:///~/x/m.db"
    assert tracking.shareable_uri("sqlite:////srv/m.db") == "sqlite:////srv/m.db"
    assert tracking.shareable_uri("postgresql://ann:s3cret@db:5432/mlflow") == "postgresql://ann:***@db:5432/mlflow"
    assert tracking.shareable_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
