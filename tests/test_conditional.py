"""Class-conditional GANs: conditional G and projection D, conditional metrics, config checks,
export and sampling by class."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ganpipe import cli
from ganpipe.config.schema import DataConfig, EvalConfig, LossConfig, ModelConfig, OptimizerConfig, TrainConfig, TrialConfig
from ganpipe.data import get_dataset
from ganpipe.metrics import Evaluator, fixed_labels
from ganpipe.nets import build_networks
from ganpipe.train import trainer_from_checkpoint
from ganpipe.train.loop import Trainer
from ganpipe.train.reporter import ListReporter
from conftest import register_export

ROOT = Path(__file__).resolve().parents[1]


# ---- networks ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_conditional_networks_take_labels_as_indices_or_class_weights(arch, shape):
    g, d = build_networks(ModelConfig(architecture=arch, latent_dim=8, width=8, conditional=True,
                                      spectral_norm=True), shape, n_classes=10)
    g.eval()
    z, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 9, 9])
    x = g(z, y)
    assert x.shape == (6, *shape)
    # an exported model takes one-hot weights: the same samples as the class indices
    assert torch.allclose(g(z, torch.nn.functional.one_hot(y, 10).float()), x, atol=1e-6)
    assert d(x, y).shape == (6,)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_the_label_changes_g_and_the_projection_term_of_d(arch):
    g, d = build_networks(ModelConfig(architecture=arch, latent_dim=8, width=8, conditional=True), (1, 8, 8), 10)
    g.eval()
    z = torch.randn(4, 8)
    # the class embeddings start at zero in conditional BatchNorm: give them some weight first
    for m in g.modules():
        if isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight)
    assert not torch.allclose(g(z, torch.zeros(4, dtype=torch.int64)), g(z, torch.ones(4, dtype=torch.int64)))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert not torch.allclose(d(x, torch.zeros(4, dtype=torch.int64)), d(x, torch.ones(4, dtype=torch.int64)))


def test_labels_must_match_whether_a_network_is_conditional():
    g, d = build_networks(ModelConfig(architecture="dcgan", latent_dim=8, width=8, conditional=True), (1, 8, 8), 10)
    with pytest.raises(ValueError, match="pass class labels"):
        g(torch.randn(2, 8))
    g0, _ = build_networks(ModelConfig(architecture="dcgan", latent_dim=8, width=8), (1, 8, 8))
    with pytest.raises(ValueError, match="do not pass"):
        g0(torch.randn(2, 8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="architecture dcgan or resnet"):
        build_networks(ModelConfig(architecture="mlp", conditional=True), (1, 8, 8), 10)
    with pytest.raises(ValueError, match="labelled data"):
        build_networks(ModelConfig(architecture="dcgan", conditional=True), (3, 8, 8), 0)


# ---- metrics ----------------------------------------------------------------------------
def real_images_for(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A real digit of each asked-for class: what a perfect conditional G would give."""
    ds = get_dataset("digits")
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(len(labels), 1, 8, 8)
    for c in range(10):
        pool = ds.images[ds.labels == c]
        mine = labels == c
        out[mine] = pool[torch.randint(len(pool), (int(mine.sum()),), generator=g)]
    return out


def test_real_digits_of_the_asked_class_score_high_class_accuracy_and_low_intra_fid():
    ev = Evaluator("digits", conditional=True)
    labels = fixed_labels(ev.num_samples, 10)
    right = ev.evaluate(real_images_for(labels), labels=labels)
    wrong = ev.evaluate(real_images_for((labels + 1) % 10), labels=labels)
    assert right["class_accuracy"] > 0.95
    assert wrong["class_accuracy"] < 0.05
    # the overall distribution is the same, only the class each image claims differs
    assert abs(right["fid"] - wrong["fid"]) < 5
    assert right["intra_fid"] < 20 < 10 * right["intra_fid"] < wrong["intra_fid"]
    assert all(right[f"fid_class_{c}"] < wrong[f"fid_class_{c}"] for c in range(10))
    assert all(right[f"coverage_class_{c}"] > 0.5 for c in range(10))
    assert ev.protocol["conditional"] == {"labels": "balanced", "n_classes": 10}
    assert "conditional" not in Evaluator("digits").protocol


def test_conditional_evaluator_refuses_unlabelled_data_missing_labels_and_too_few_samples():
    with pytest.raises(ValueError, match="no class labels"):
        Evaluator("stacked-digits", conditional=True)
    ev = Evaluator("digits", conditional=True)
    with pytest.raises(ValueError, match="needs the labels"):
        ev.evaluate(torch.zeros(ev.num_samples, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 60"):
        Evaluator("digits", 50, conditional=True)
    nan = ev.evaluate(torch.full((ev.num_samples, 1, 8, 8), float("nan")), labels=fixed_labels(ev.num_samples, 10))
    assert "class_accuracy" in nan and "fid_class_9" in nan


# ---- training ---------------------------------------------------------------------------
def small(arch="dcgan", steps=40, every=20, loss="hinge") -> TrialConfig:
    return TrialConfig(
        data=DataConfig("digits"),
        model=ModelConfig(architecture=arch, latent_dim=8, width=8, ema_decay=0.9, conditional=True,
                          spectral_norm=arch == "resnet"),
        loss=LossConfig(name=loss, r1_weight=0.1 if loss == "ns" else 0.0),
        optimizer=OptimizerConfig(lr_g=1e-3, lr_d=1e-3),
        train=TrainConfig(steps=steps, batch_size=32, n_disc=2, seed=3),
        eval=EvalConfig(every=every, num_samples=200),
    )


@pytest.mark.parametrize("arch,loss", [("dcgan", "hinge"), ("resnet", "wgan-gp"), ("dcgan", "ns")])
def test_conditional_trainer_reports_class_metrics_and_resumes_exactly(tmp_path, arch, loss):
    straight, reports = Trainer(small(arch, loss=loss)), ListReporter()
    straight.train(reports)
    assert [r.step for r in reports.reports] == [20, 40]
    last = reports.reports[-1].metrics
    assert {"class_accuracy", "intra_fid", "fid_class_0", "coverage_class_9"} <= set(last)

    first = Trainer(small(arch, steps=20, loss=loss))
    first.train()
    resumed, resumed_reports = trainer_from_checkpoint(first.save_checkpoint(tmp_path / "ck"), steps=40), ListReporter()
    resumed.train(resumed_reports)
    assert resumed_reports.reports[-1].metrics["intra_fid"] == last["intra_fid"]
    assert resumed_reports.reports[-1].metrics["loss_d"] == last["loss_d"]


def test_unconditional_training_draws_the_same_random_numbers_as_before():
    """Adding conditional GANs must not change an unconditional trial's numbers (same RNG use)."""
    cfg = small(steps=20)
    cfg.model.conditional = False
    trainer = Trainer(cfg)
    trainer.train()
    ref = torch.Generator().manual_seed(cfg.train.seed + 1)
    for _ in range(cfg.train.steps):
        for _ in range(cfg.train.n_disc):
            trainer.dataset.sample(cfg.train.batch_size, ref)
            torch.randn(cfg.train.batch_size, cfg.model.latent_dim, generator=ref)
        torch.randn(cfg.train.batch_size, cfg.model.latent_dim, generator=ref)
    assert torch.equal(ref.get_state(), trainer.rng.get_state())


# ---- config -----------------------------------------------------------------------------
def write(folder: Path, data: dict) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("data,model,expect", [
    ("ring8", {"architecture": "dcgan", "conditional": True}, "ring8 has no class labels"),
    ("stacked-digits", {"architecture": "dcgan", "conditional": True}, "stacked-digits has no class labels"),
    ("digits", {"architecture": "mlp", "conditional": True}, "model.architecture is mlp"),
    ("digits", {"architecture": {"choice": ["mlp", "dcgan"]}, "conditional": {"choice": [False, True]}},
     "when: {model.architecture: [dcgan, resnet]}"),
])
def test_conditional_without_labels_or_a_conditional_architecture_exits_2(tmp_path, capsys, data, model, expect):
    path = write(tmp_path, {"name": "c", "data": data, "model": model})
    assert cli.main(["trial", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: model.conditional: true needs" in err and expect in err
    assert not (tmp_path / "out").exists()


def test_conditional_searched_only_where_the_architecture_has_a_variant_is_valid(tmp_path, capsys):
    path = write(tmp_path, {"name": "c", "data": "digits", "model": {
        "architecture": {"choice": ["mlp", "dcgan", "resnet"]},
        "conditional": {"choice": [False, True], "when": {"model.architecture": ["dcgan", "resnet"]}}}})
    assert cli.main(["sweep", str(path), "--dry-run"]) == 0
    assert "model.conditional" in capsys.readouterr().out


# ---- export and sampling ----------------------------------------------------------------
def test_conditional_checkpoint_samples_by_class(tmp_path, capsys):
    trainer = Trainer(small(steps=20))
    trainer.train()
    ckpt = trainer.save_checkpoint(tmp_path / "ck")
    assert cli.main(["sample", str(ckpt), "-n", "7", "--label", "3", "-o", str(tmp_path / "s.npy")]) == 0
    model, example, meta = trainer.export()
    assert meta["ganpipe_kind"] == "conditional-generator" and meta["n_classes"] == 10
    assert example.shape == (4, 8 + 10)
    import numpy as np

    z = torch.randn(7, 8, generator=torch.Generator().manual_seed(0))
    expected = trainer.generate(z, torch.full((7,), 3))
    assert np.allclose(np.load(tmp_path / "s.npy"), expected.numpy(), atol=1e-5)
    assert cli.main(["sample", str(ckpt), "--label", "10", "-o", str(tmp_path / "x.png")]) == 2
    assert "--label must be in 0..9" in capsys.readouterr().err
    assert cli.main(["sample", str(ckpt), "-n", "20", "-o", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    # more images than a PNG grid can show: refused before anything is written, .npy suggested
    assert cli.main(["sample", str(ckpt), "-n", "5000", "-o", str(tmp_path / "big.png")]) == 2
    assert "big.npy" in capsys.readouterr().err and not (tmp_path / "big.png").exists()


@pytest.mark.integration
def test_registered_conditional_generator_loads_without_ganpipe_and_samples_a_class(tmp_path):
    import mlflow

    trainer = Trainer(small(steps=20))
    trainer.train()
    uri, version = register_export(tmp_path, trainer, "cond")
    assert int(version.version) == 1
    # mlflow.set_tracking_uri sets $MLFLOW_TRACKING_URI: it must not outlive the call (later sweeps inherit it)
    assert os.environ.get("MLFLOW_TRACKING_URI") is None
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info("models:/cond/1")
    assert info.metadata["n_classes"] == 10 and info.signature.inputs.inputs[0].shape[1] == 18
    # a fresh process that never imports ganpipe: [z | one-hot class] -> digits of that class
    code = (
        "import sys, mlflow, torch; sys.modules['ganpipe'] = None; mlflow.set_tracking_uri(sys.argv[1]);"
        "m = mlflow.pytorch.load_model('models:/cond/1');"
        "x = torch.cat([torch.zeros(5, 8), torch.nn.functional.one_hot(torch.full((5,), 3), 10).float()], 1);"
        "y = m(x); print(tuple(y.shape), float(y.min()) >= -1, float(y.max()) <= 1)"
    )
    proc = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(5, 1, 8, 8) True True"


@pytest.mark.slow
def test_conditional_dcgan_on_digits_draws_the_asked_class(tmp_path):
    out = tmp_path / "cond"
    path = ROOT / "sweeps" / "examples" / "digits-conditional.yaml"
    # half the example's 3000 steps keeps CI short; the full run is in docs/image-tasks.md
    assert cli.main(["trial", str(path), "--out", str(out), "--threads", "1", "--set", "train.steps=1500"]) == 0
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    assert metrics["class_accuracy"] >= 0.8
    assert metrics["modes"] == 10
    assert metrics["intra_fid"] >= metrics["fid"]  # per class, the bar is higher


def test_conditional_trial_on_labelled_files_uses_the_data_classifier(tmp_path, monkeypatch):
    """MNIST-format files: the classifier `features train` made judges class accuracy per class."""
    from test_files_datasets import sweep_file, write_idx

    monkeypatch.setenv("GANPIPE_HOME", str(tmp_path / "home"))
    root = write_idx(tmp_path / "mnist", gz=True, n=80)  # 8 per class: more than k=5 for per-class coverage
    assert cli.main(["features", "train", "mnist", "--set", f"data.root={root}", "--epochs", "2"]) == 0
    path = sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)},
                      model={"architecture": "dcgan", "conditional": True, "latent_dim": 8, "width": 4})
    out = tmp_path / "trial"
    assert cli.main(["trial", str(path), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished"
    assert {"class_accuracy", "intra_fid", "fid_class_9"} <= set(result["metrics"])
    assert result["protocol"]["conditional"] == {"labels": "balanced", "n_classes": 10}
