"""A new user's first look, in a real browser: a tiny sweep with promotion, then `ganpipe ui` and the pages its
links open, rendered by headless Chromium (tests/browser.py). Screenshots are saved in the test's tmp_path."""
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from mlflow.tracking import MlflowClient
from services import free_port, stop_group

import browser

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(not browser.available(), reason="needs Debian's chromium (.ci/run installs it)")]

SWEEP = {
    "name": "ui-sweep",
    "description": "a tiny ring8 sweep for the UI test",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 32},
    "loss": {"name": {"choice": ["ns", "hinge"]}},
    "optimizer": {"lr_g": {"loguniform": [1e-4, 3e-3]}, "lr_d": 1e-3},
    "train": {"steps": 200, "batch_size": 64},
    "eval": {"every": 100, "num_samples": 500},
    "search": {"num_samples": 3, "sampler": "random", "seed": 1, "max_concurrent": 2, "scheduler": {"name": "none"}},
    "resources": {"cpu": 1, "share_idle_cpus": False},
    "promote": {"enabled": True, "max_mode_tv": 1, "min_diversity": 0},  # permissive: something is promoted
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    (folder / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    proc = subprocess.run([sys.executable, "-m", "ganpipe.cli", "sweep", "sweep.yaml", "--num-cpus", "2"], cwd=folder,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return folder, proc.stdout


@pytest.fixture(scope="module")
def ui(swept):
    folder, _ = swept
    port = free_port()
    # the UI's output goes to a file, never to a pipe nobody reads: the server logs every request (this test's
    # six page loads: ~63 KB, a pipe holds 64 KiB), and once the pipe was full its next log line blocked it, so
    # the page's requests (and chromium) waited forever (CI, session 35: at the fifth page load)
    log = folder / "ui.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ganpipe.cli", "ui", "--tracking-uri",
                                 f"sqlite:///{folder / 'mlflow.db'}", "--port", str(port)],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        lines = log.read_text().splitlines(keepends=True)[:4]  # the address, a header, one sweep, the models page
        yield port, "".join(lines)
    finally:
        stop_group(proc)  # the UI runs its server in child processes


def test_sweep_summary_ends_on_the_decision(swept):
    _, out = swept
    lines = [line for line in out.splitlines() if line.strip()]
    registry = max(i for i, line in enumerate(lines) if "Created version" in line)  # MLflow's own, on stderr
    assert lines[-3:] == ["  ui-sweep v1 is champion: no champion yet",
                          "  load it: mlflow.pytorch.load_model('models:/ui-sweep@champion')",
                          "  sample it: ganpipe sample models:/ui-sweep@champion -n 64 -o samples.png"]
    assert registry < len(lines) - 3
    table = out[out.index("ranked trials by"):out.index("sweep finished")].splitlines()[1:5]
    assert all(len(line) <= 120 for line in table) and re.search(r"  [0-9a-f]{8}$", table[1]), table
    assert "Result logdir: " + str(swept[0] / "ray_results") in out  # not Ray's session folder


def test_experiment_and_runs_as_mlflow_shows_them(swept):
    folder, _ = swept
    c = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = c.get_experiment_by_name("ui-sweep")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == "a tiny ring8 sweep for the UI test"
    champion = c.get_model_version_by_alias("ui-sweep", "champion")
    run = c.get_run(champion.run_id)
    assert run.info.end_time < champion.creation_timestamp  # the trial's end, not the promotion's
    assert float(run.data.tags["ganpipe.best.objective"]) >= 0
    assert not any(k.startswith("best_") and k != "best_objective" for k in run.data.metrics)  # tags now
    assert len(c.get_metric_history(run.info.run_id, "best_objective")) == 2  # a curve: one point per evaluation


def test_ui_links_open_the_trials_and_the_champion(ui, swept, tmp_path):
    port, printed = ui
    folder, _ = swept
    link = re.search(r"ui-sweep\s+(http://\S+)", printed).group(1)
    assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "viewStateShareKey=" in link, printed
    trials = browser.dump_dom(link, tmp_path, budget_ms=15000)
    browser.screenshot(link, tmp_path / "trials.png", tmp_path, budget_ms=15000, window=(1900, 900))
    names = [r.info.run_name for r in MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_runs(
        [re.search(r"experiments/(\d+)", link).group(1)]) if "mlflow.parentRunId" in r.data.tags]
    assert len(names) == 3 and all(name in trials for name in names)  # every trial, not folded under the sweep
    # the sort and its metric column (the grid renders only the columns in view: the best checkpoint's
    # ganpipe.best.* columns to its right are in trials.png, taken 1900 px wide)
    assert "Sort: best_objective" in re.sub(r"<[^>]+>", "", trials) and trials.count("best_objective") >= 2
    assert "Model training" in trials  # the sidebar's switch: the training-runs view, not the GenAI overview

    experiment = link.split("?")[0].rsplit("/runs", 1)[0]  # the plain experiment page: nested under the sweep
    runs = browser.dump_dom(experiment + "/runs?workflowType=machine_learning", tmp_path, budget_ms=15000)
    browser.screenshot(experiment + "/runs?workflowType=machine_learning", tmp_path / "runs.png", tmp_path,
                       budget_ms=15000)
    assert "ui-sweep-" in runs  # the sweep's parent run, with its trials nested (expandable) under it

    models = f"http://127.0.0.1:{port}/#/models/ui-sweep"
    page = browser.dump_dom(models, tmp_path, budget_ms=15000)
    browser.screenshot(models, tmp_path / "models.png", tmp_path, budget_ms=15000)
    assert "champion" in page
