"""A new user's small edges (issue 22), each without Ray: the bare command, --version, the dry-run plan, the
sweep's experiment in the MLflow UI, the ranked table on screen, a promoted run's end time, scatter marks."""
import json

import pytest
import torch

from ganpipe import __version__, cli, tracking
from ganpipe.config import load_sweep
from ganpipe.tune.plan import describe_plan, read_by_trials
from ganpipe.tune.report import to_screen
from conftest import experiment_in


def test_bare_ganpipe_prints_help_and_version(capsys):
    assert cli.main([]) == 0
    assert "usage: ganpipe" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:  # argparse's version action exits
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"ganpipe {__version__}"


def test_dry_run_plan_shows_only_what_trials_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndata: ring8\nloss: {name: {choice: [ns, hinge]}}\noptimizer: rmsprop\n"
                    "model: {ema_decay: {choice: [0.0, 0.99]}}\n")
    sweep = load_sweep(path)
    config, unread = read_by_trials(sweep)
    assert "cycle_weight" not in config.get("loss", {}) and "identity_weight" not in config.get("loss", {})
    assert "gp_weight" not in config.get("loss", {})  # wgan-gp is not among the choices
    assert "beta1" not in config["optimizer"] and "r1_weight" not in config.get("loss", {})
    assert "ema_decay" not in config["model"]  # searched: the search space shows it, not a default
    assert any(u.startswith("loss.cycle_weight") for u in unread)
    plan = describe_plan(sweep)
    assert "cycle_weight: 10.0" not in plan and "ema_decay: 0.0" not in plan and "not read by any trial" in plan

    path.write_text("name: s\ndata: ring8\n")
    config, unread = read_by_trials(load_sweep(path))
    assert "ema_decay" not in config["model"] and "loss.r1_weight (0: off)" in unread


def test_experiment_opens_on_training_runs_with_description(tmp_path):
    c = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    old = c.create_experiment("reused")  # made before: a sweep that reuses it sets the tags too
    assert tracking.ensure_experiment(c, "reused", "what the sweep is for") == old
    tags = c.get_experiment(old).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "what the sweep is for"
    tracking.set_trials_view(c, old, ["mode_tv"], ["loss.name"])
    view = json.loads(c.get_experiment(old).tags["mlflow.sharedViewState.ganpipe-trials"])
    assert view["orderByKey"] == "metrics.`best_objective`" and view["orderByAsc"] is True
    assert "tags.`ganpipe.best.mode_tv`" in view["selectedColumns"] and "params.`loss.name`" in view["selectedColumns"]
    assert tracking.experiments_with_view(c) == [("reused", old)]
    assert tracking.trials_view_path(old).endswith("viewStateShareKey=ganpipe-trials")


def test_ranked_table_fits_120_columns_with_short_run_ids():
    rows = [{"trial_id": f"abcde_{i:05d}", "status": "TERMINATED", "loss.name": "hinge", "optimizer.lr_g": 1.234567e-4,
             "optimizer.lr_d": 2.5e-4, "optimizer.beta1": 0.4, "model.ema_decay": 0.999, "train.n_disc": 3,
             "step": 8000, "objective": 0.0312, "fid": 1.2345, "kid": 0.0012, "mode_tv": 0.0312, "diversity": 1.0,
             "modes": 8.0, "modes_covered": 1.0, "high_quality": 0.75, "kl": 0.002, "mlflow_run_id": "f" * 32}
            for i in range(3)]
    text = to_screen(rows)
    lines = text.splitlines()
    assert all(len(line) <= 120 for line in lines), text
    assert lines[1].split()[-1] == "f" * 8 and "f" * 9 not in text
    assert "lr_g" in lines[0] and "objective" in lines[0]
    assert lines[-1].startswith("(also in results.csv:")  # what did not fit is named


def test_promotion_keeps_the_trials_end_time(tmp_path):
    from ganpipe.train.export import plain_torch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    run_id = tracking.start_parent_run(c, experiment_in(tmp_path, c, "m"), "trial", {})
    c.set_terminated(run_id, "FINISHED", end_time=1_700_000_000_000)
    model = plain_torch(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    tracking.register_generator(uri, run_id, "m", model, torch.zeros(3, 4), {"ganpipe_kind": "generator"}, {})
    info = c.get_run(run_id).info
    assert (info.status, info.end_time) == ("FINISHED", 1_700_000_000_000)


def test_scatter_marks_true_modes(tmp_path):
    from ganpipe.data import get_dataset
    from ganpipe.viz import mode_marks, save_samples_png

    modes = mode_marks(get_dataset("ring8"))
    assert modes[0].shape == (8, 2) and modes[1] == 0.02
    assert mode_marks(get_dataset("digits")) is None
    import matplotlib.pyplot as plt

    calls = []
    real = plt.Circle
    plt.Circle = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        save_samples_png(torch.randn(100, 2), tmp_path / "s.png", "t", modes=modes)
    finally:
        plt.Circle = real
    assert len(calls) == 8 and all(abs(r - 0.06) < 1e-9 for _, r in calls)
    assert (tmp_path / "s.png").stat().st_size > 0
