"""`ganpipe trial` as a user runs it: outputs, bad input, and the shipped example configs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganpipe import cli

ROOT = Path(__file__).resolve().parents[1]


def write(folder: Path, data: dict) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


TINY = {
    "name": "tiny",
    "data": "ring8",
    "model": {"architecture": "mlp", "latent_dim": 4, "width": 16},
    "loss": {"name": {"choice": ["hinge", "ns"]}},
    "optimizer": {"lr_g": {"loguniform": [1e-4, 1e-2]}},
    "train": {"steps": 60, "batch_size": 32},
    "eval": {"every": 30, "num_samples": 500},
}


def test_trial_writes_samples_metrics_checkpoint_and_result(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["trial", str(write(tmp_path, TINY)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "loss.name=hinge" in printed  # first choice
    assert "optimizer.lr_g=0.001" in printed  # geometric midpoint of [1e-4, 1e-2]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000030.png", "step-0000060.png"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and result["step"] == 60
    for key in ("fid", "diversity", "modes", "high_quality", "kl"):
        assert key in result["metrics"]
    assert result["protocol"]["dataset"] == "ring8"
    assert (out / "checkpoint.pt").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["loss"]["name"] == "hinge"


def test_set_overrides_the_first_choice(tmp_path):
    out = tmp_path / "out"
    args = ["trial", str(write(tmp_path, TINY)), "--out", str(out), "--set", "loss=ns", "--set", "optimizer.lr_g=2e-4"]
    assert cli.main(args) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["loss"]["name"] == "ns" and cfg["optimizer"]["lr_g"] == 2e-4


def test_a_short_debugging_trial_ignores_the_sweeps_scheduler(tmp_path, capsys):
    # a trial runs no ASHA, so cutting train.steps below the grace period is no mistake here (a sweep refuses it)
    sweep = {**TINY, "search": {"scheduler": {"name": "asha", "grace_period": 1000}}}
    out = tmp_path / "out"
    assert cli.main(["trial", str(write(tmp_path, sweep)), "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "result.json").read_text())["step"] == 60


def test_malformed_config_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = {**TINY, "loss": {"name": "wgan"}, "train": {"steps": -5}}
    out = tmp_path / "out"
    assert cli.main(["trial", str(write(tmp_path, bad)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any("s.yaml: loss.name:" in line and "wgan-gp" in line for line in err)
    assert any("s.yaml: train.steps:" in line for line in err)
    assert not out.exists()


def test_existing_output_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert cli.main(["trial", str(write(tmp_path, TINY)), "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_unusable_output_counts_and_sample_sizes_are_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default runs/ folder would appear
    sweep = str(write(tmp_path, TINY))
    (tmp_path / "a-file").write_text("keep me")
    cases = [
        (["--out", str(tmp_path / "a-file")], f"--out: out: {tmp_path / 'a-file'} is a file, not a folder"),
        (["--out", "/proc/no-such/out"], "--out: out: cannot write to /proc/no-such/out"),
        (["--threads", "0"], "--threads: threads: must be >= 1, got 0"),
        (["--set", "eval.num_samples=3"], "eval.num_samples: must be 0 (the dataset's protocol default) or more "
                                          "than k=5 (k-NN radii), got 3"),
    ]
    for args, expect in cases:
        assert cli.main(["trial", sweep, *args]) == 2, args
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, err
    assert (tmp_path / "a-file").read_text() == "keep me" and not (tmp_path / "runs").exists()


def test_validation_and_the_protocol_share_k():
    from ganpipe.config.schema import PRDC_K
    from ganpipe.metrics.constants import K

    assert PRDC_K == K


def test_diverged_trial_exits_1_with_the_step(tmp_path, capsys):
    bad = {**TINY, "loss": "lsgan", "optimizer": {"lr_g": 1e12, "lr_d": 1e12}}
    out = tmp_path / "out"
    assert cli.main(["trial", str(write(tmp_path, bad)), "--out", str(out)]) == 1
    assert "DIVERGED: diverged at step" in capsys.readouterr().out
    assert json.loads((out / "result.json").read_text())["status"] == "diverged"


def test_pdb_flag_opens_post_mortem_on_an_exception(tmp_path, monkeypatch):
    import pdb

    import ganpipe.trial

    seen = []
    monkeypatch.setattr(ganpipe.trial, "run_trial", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(pdb, "post_mortem", lambda tb: seen.append(tb))
    assert cli.main(["trial", str(write(tmp_path, TINY)), "--pdb"]) == 1
    assert len(seen) == 1 and seen[0] is not None
    with pytest.raises(ZeroDivisionError):  # without --pdb the exception propagates
        cli.main(["trial", str(write(tmp_path, TINY))])


def test_console_script_is_installed():
    proc = subprocess.run([Path(sys.executable).parent / "ganpipe", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "trial" in proc.stdout and "sweep" in proc.stdout


@pytest.mark.slow
def test_ring8_good_covers_all_modes_in_under_three_minutes_on_one_core(tmp_path):
    out = tmp_path / "ring8"
    path = ROOT / "sweeps" / "examples" / "ring8-good.yaml"
    assert cli.main(["trial", str(path), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["metrics"]["modes"] == 8
    assert result["metrics"]["high_quality"] >= 0.70
    assert result["wall_seconds"] < 180


@pytest.mark.slow
def test_dcgan_on_digits_covers_all_ten_classes(tmp_path):
    out = tmp_path / "digits"
    path = ROOT / "sweeps" / "examples" / "digits-dcgan.yaml"
    assert cli.main(["trial", str(path), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["metrics"]["modes"] == 10


def test_features_train_digits_writes_a_classifier_that_passes(tmp_path, capsys):
    out = tmp_path / "digits.pt"
    assert cli.main(["features", "train", "digits", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    accuracy = float(printed.split("held-out accuracy ")[1].split(",")[0])
    assert accuracy >= 0.95 and out.stat().st_size > 0


def test_features_train_unknown_dataset_is_bad_input(capsys):
    assert cli.main(["features", "train", "cifar100"]) == 2
    assert "valid: digits" in capsys.readouterr().err


def test_ctrl_c_leaves_a_result_with_what_the_trial_reached(tmp_path):
    """Ctrl-C (here SIGTERM, which a trial takes as one, also where a background job ignores SIGINT) during
    `ganpipe trial`: exit 130, and result.json says interrupted, at which step, with the last and best
    evaluation so far (what a person debugging wants to see)."""
    from conftest import interrupt_when

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ganpipe.cli", "trial", str(ROOT / "sweeps" / "quick.yaml"), "--out", str(out),
           "--set", "train.steps=200000", "--set", "eval.every=200"]
    code, text = interrupt_when(cmd, tmp_path, lambda: len((out / "metrics.jsonl").read_text().splitlines()) >= 2,
                                timeout=120, sig="SIGTERM")
    assert code == 130, text[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "interrupted" and result["step"] >= 400
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result["metrics"]["fid"] == rows[-1]["fid"]
    # best = the sweep's objective (quick.yaml: mode_tv), the earliest of equals
    assert result["best"]["objective"] == min(r["objective"] for r in rows)
    assert result["best"]["objective"] == result["best"]["mode_tv"]
