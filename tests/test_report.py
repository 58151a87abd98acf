"""`ganpipe report`: a real tiny sweep logs its stability report to its parent run; `ganpipe report` writes the
page again from MLflow, and headless Chromium renders it (every figure decoded, the findings table there, a
screenshot). Bad input exits 2 in one line naming the option."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import browser
from ganpipe.cli import main

SWEEP = {
    "name": "t-report",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32, "ema_decay": {"choice": [0.0, 0.9]}},
    "loss": {"name": {"choice": ["ns", "hinge"]}},
    "optimizer": {"lr_g": {"loguniform": [1e-4, 3e-3]}, "lr_d": 1e-3},
    "train": {"steps": 200, "batch_size": 64},
    "eval": {"every": 100, "num_samples": 300},
    "search": {"num_samples": 4, "sampler": "random", "seed": 1, "max_concurrent": 2,
               "objectives": ["fid", "diversity"], "scheduler": {"name": "none"}},
    "promote": {"min_diversity": 0.5},
    "resources": {"cpu": 1},
}


def ganpipe(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    extra = ["--num-cpus", "2"] if args[0] == "sweep" else []
    return subprocess.run([sys.executable, "-m", "ganpipe.cli", *args, *extra], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not browser.available(), reason="chromium is not installed (.ci/run installs Debian's)")
def test_a_sweep_logs_its_report_and_the_page_renders_in_a_browser(tmp_path):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    proc = ganpipe(tmp_path, "sweep", "sweep.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stability report: artifact report/index.html" in proc.stdout, proc.stderr[-2000:]

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = c.search_runs([c.get_experiment_by_name("t-report").experiment_id],
                              filter_string="tags.`ganpipe.kind` = 'sweep'")
    logged = {a.path for a in c.list_artifacts(parent.info.run_id, "report")}
    assert "report/index.html" in logged and any(p.endswith(".png") for p in logged), logged

    # `ganpipe report` in this process (the sweep above ran as a user runs it; this saves a start-up)
    page = tmp_path / "page" / "index.html"
    assert main(["report", "t-report", "-o", str(page.parent), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 0
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    for kind in ("budget-1", "factor-1-loss_name", "factor-1-optimizer_lr_g", "importance-1", "curves-1",
                 "pareto", "sample-1-1"):
        assert f"{kind}.png" in pngs, pngs

    dom = browser.dump_dom(page.as_uri(), tmp_path)
    body = re.search(r"<body[^>]*>", dom).group(0)
    shown, rendered = (int(re.search(rf'{k}="(\d+)"', body).group(1)) for k in ("data-images", "data-images-rendered"))
    assert shown == rendered >= len(pngs), body  # every figure and sample decoded (naturalWidth > 0)
    assert 'data-natural-width="0"' not in dom
    findings = re.search(r'<table class="findings">.*?</table>', dom, re.S).group(0)
    assert re.search(r"loss\.name at each trial's best: hinge: \d+/\d+ covered &gt;= 99 % of modes", findings), findings
    assert "4 trials: 4 evaluated at least once" in findings

    shot = browser.screenshot(page.as_uri(), tmp_path / "report.png", tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_a_trials_best_is_its_lowest_objective_the_earliest_of_equals(tmp_path):
    from ganpipe.report.data import _trial, ranked

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.create_experiment("t")
    runs = []
    for objective in ([3.0, 1.0, 1.0, 2.0], [1.0, 5.0, 5.0, 5.0]):
        run_id = c.create_run(exp, tags={"ganpipe.status": "finished"}).info.run_id
        for step, value in zip((100, 200, 300, 400), objective):
            c.log_metric(run_id, "objective", value, step=step)
            c.log_metric(run_id, "fid", 10.0 * value + step, step=step)
        runs.append(_trial(c, c.get_run(run_id)))
    first, second = runs
    assert first.best == {"step": 200, "objective": 1.0, "fid": 210.0}
    assert first.final == {"step": 400, "objective": 2.0, "fid": 420.0}
    assert ranked(runs) == [second, first]  # equal best objectives: the earlier best step first


def test_the_target_is_the_parent_run_named_or_the_experiments_latest_pipeline_else_sweep(tmp_path):
    from ganpipe.report.data import find_target

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.create_experiment("t")
    sweep, pipeline, later = (c.create_run(exp, tags={"ganpipe.kind": k}, start_time=ms).info.run_id
                              for k, ms in (("sweep", 1000), ("pipeline", 2000), ("sweep", 3000)))
    assert find_target(c, sweep).info.run_id == sweep
    assert find_target(c, "t").info.run_id == pipeline  # a pipeline run is preferred to a later sweep run
    c.delete_run(pipeline)
    assert find_target(c, "t").info.run_id == later


def test_a_missing_optuna_study_is_a_note(tmp_path):
    """No Optuna study (a moved folder): the page is still made, with a note; importance says why not."""
    from types import SimpleNamespace

    from ganpipe.report.data import _study

    notes = []
    run = SimpleNamespace(data=SimpleNamespace(tags={"ganpipe.experiment_dir": str(tmp_path / "gone")}))
    assert _study(run, notes) is None and "MLflow alone" in notes[0]
    assert _study(SimpleNamespace(data=SimpleNamespace(tags={})), notes) is None and len(notes) == 2
    assert not (tmp_path / "gone").exists()  # reading never creates the study


@pytest.mark.parametrize("args, option", [
    (["nope", "--tracking-uri", "http://127.0.0.1:9"], "--tracking-uri"),
    (["nope", "--tracking-uri", "sqlite:///{tmp}/absent.db"], "EXPERIMENT_OR_PARENT_RUN"),
    (["nope", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "EXPERIMENT_OR_PARENT_RUN"),
    (["0123456789abcdef0123456789abcdef", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "EXPERIMENT_OR_PARENT_RUN"),
    (["{run}", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "EXPERIMENT_OR_PARENT_RUN"),
    (["t", "-o", "{tmp}/file", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "-o"),
])
def test_bad_input_exits_2_in_one_line_naming_the_option(tmp_path, capsys, args, option):
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = c.create_run(c.create_experiment("t"), tags={"ganpipe.kind": "recheck"}).info.run_id  # no sweep's run
    (tmp_path / "file").write_text("x")
    capsys.readouterr()  # MLflow's own lines as it made the store
    code = main(["report", *[a.format(tmp=tmp_path, run=run) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(option + ":"), err
    assert not (tmp_path / "absent.db").exists()


def test_log_report_of_a_run_that_is_no_sweep_is_a_note_not_an_error(tmp_path, capsys):
    from ganpipe.report import log_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(uri)
    run = c.create_run(c.create_experiment("t"), tags={"ganpipe.kind": "sweep"}).info.run_id
    capsys.readouterr()
    assert log_report(uri, run) == ""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: the stability report was not made"), err
    assert json.dumps([a.path for a in c.list_artifacts(run)]) == "[]"
