"""Unpaired style transfer: the shipped digit domains, the content classifier, the translation
protocol, the CycleGAN trainer, export and sampling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ganpipe import cli
from ganpipe.config.schema import DataConfig, EvalConfig, LossConfig, ModelConfig, OptimizerConfig, TrainConfig, TrialConfig
from ganpipe.data import get_dataset
from ganpipe.data.styled import ASSET, _digit_intensities, build_styled, digit_domains
from ganpipe.metrics.translation import TranslationEvaluator
from ganpipe.train import make_trainer, trainer_from_checkpoint
from ganpipe.train.reporter import ListReporter
from ganpipe.train.translate import TranslationTrainer
from conftest import register_export

ROOT = Path(__file__).resolve().parents[1]


# ---- the data --------------------------------------------------------------------------------
def test_shipped_styled_digits_rebuild_identically():
    digits, _ = _digit_intensities()
    with np.load(ASSET) as npz:
        assert np.array_equal(npz["styled"], build_styled(digits))


def test_domains_are_disjoint_stratified_halves_and_never_paired():
    a, b = digit_domains()
    assert a.shape == b.shape == (3, 8, 8)
    assert len(a) + len(b) == 1797
    assert abs(len(a) - len(b)) <= 10
    assert (a.labels.bincount() - b.labels.bincount()).abs().max() <= 2
    # A is grey (3 equal channels), B coloured
    assert torch.equal(a.images[:, 0], a.images[:, 1]) and not torch.equal(b.images[:, 0], b.images[:, 1])
    # no digit of A appears in B: the two halves are disjoint and together are all the digits
    from ganpipe.data.styled import split_halves

    idx_a, idx_b = split_halves(_digit_intensities()[1])
    assert set(idx_a.tolist()).isdisjoint(idx_b.tolist())
    assert sorted(idx_a.tolist() + idx_b.tolist()) == list(range(1797))
    assert torch.equal(a.labels, _digit_intensities()[1][idx_a])
    ds = get_dataset("digits-translation")
    x_a, x_b = ds.sample_pair(64, torch.Generator().manual_seed(0))
    assert x_a.shape == x_b.shape == (64, 3, 8, 8)
    assert a.content_sha256 != b.content_sha256


def test_shipped_content_classifier_rebuilds_to_the_same_weights(tmp_path, capsys):
    from ganpipe.metrics.styled_classifier import load_styled_classifier

    """Retraining with the shipped seed reproduces the classifier: the same data, the same held-out accuracy (to one
    image). Not the same bytes everywhere: on this project's machine in session 10 the landed code rebuilt it with
    an identical accuracy (0.9385) and another sha256 (float round-off of the CPU's kernels over 40 epochs)."""
    shipped = load_styled_classifier().metadata
    assert shipped["heldout_accuracy"] > 0.9
    assert cli.main(["features", "train", "digits-translation", "--out", str(tmp_path / "s.pt")]) == 0
    capsys.readouterr()
    rebuilt = load_styled_classifier(tmp_path / "s.pt").metadata
    assert rebuilt["data_sha256"] == shipped["data_sha256"] and rebuilt["seed"] == shipped["seed"]
    assert abs(rebuilt["heldout_accuracy"] - shipped["heldout_accuracy"]) <= 1 / shipped["n_heldout"] + 1e-9


# ---- the protocol ------------------------------------------------------------------------------
def test_real_target_images_beat_untranslated_source_images():
    ds = get_dataset("digits-translation")
    ev = TranslationEvaluator(ds)
    source = ev.source
    # identity "translation": FID equals fid_source, the content is kept, no cycle error
    same = ev.evaluate(source, source)
    assert same["fid"] == pytest.approx(same["fid_source"], rel=1e-9)
    assert same["content_kept"] > 0.85 and same["cycle_error"] == 0.0
    # the ideal translation: each source digit restyled (built with an unseen style seed)
    from ganpipe.data.styled import split_halves

    digits, labels = _digit_intensities()
    a_idx, _ = split_halves(labels)
    ideal = torch.from_numpy(build_styled(digits[a_idx.numpy()], seed=5)).float() / 127.5 - 1
    good = ev.evaluate(ideal, source)
    assert good["fid"] < same["fid_source"] / 10
    assert good["content_kept"] > 0.9
    assert good["diversity"] > 0.5
    assert ev.protocol["task"] == "translation"
    nan = ev.evaluate(torch.full_like(source, float("nan")), source)
    assert all(np.isnan(v) for v in nan.values())


# ---- training ---------------------------------------------------------------------------------
def small(steps=20, every=10, arch="resnet", loss="lsgan") -> TrialConfig:
    return TrialConfig(
        data=DataConfig("digits-translation"),
        model=ModelConfig(architecture=arch, width=8, ema_decay=0.9, spectral_norm=loss == "hinge"),
        loss=LossConfig(name=loss, cycle_weight=10.0, identity_weight=2.0, r1_weight=0.1 if loss == "ns" else 0.0),
        optimizer=OptimizerConfig(lr_g=5e-4, lr_d=5e-4),
        train=TrainConfig(steps=steps, batch_size=16, seed=1),
        eval=EvalConfig(every=every),
    )


@pytest.mark.parametrize("arch,loss", [("resnet", "lsgan"), ("dcgan", "hinge"), ("resnet", "wgan-gp"), ("dcgan", "ns")])
def test_translation_trainer_reports_and_resumes_exactly(tmp_path, arch, loss):
    straight, reports = make_trainer(small(arch=arch, loss=loss)), ListReporter()
    assert isinstance(straight, TranslationTrainer)
    straight.train(reports)
    last = reports.reports[-1].metrics
    assert {"fid", "fid_source", "content_kept", "cycle_error", "diversity", "loss_d", "loss_g"} <= set(last)
    assert reports.reports[-1].samples.shape == (60, 3, 8, 8)  # 3 rows of sources, each above its translations

    first = make_trainer(small(steps=10, arch=arch, loss=loss))
    first.train()
    resumed = trainer_from_checkpoint(first.save_checkpoint(tmp_path / "ck"), steps=20)
    assert isinstance(resumed, TranslationTrainer)
    resumed_reports = ListReporter()
    resumed.train(resumed_reports)
    assert resumed_reports.reports[-1].metrics["fid"] == last["fid"]
    assert resumed_reports.reports[-1].metrics["cycle_error"] == last["cycle_error"]


def test_the_cycle_and_identity_weights_are_used():
    losses = {}
    for cycle, identity in ((0.0, 0.0), (10.0, 5.0)):
        cfg = small(steps=5, every=5)
        cfg.loss.cycle_weight, cfg.loss.identity_weight = cycle, identity
        reports = ListReporter()
        make_trainer(cfg).train(reports)
        losses[cycle] = reports.reports[-1].metrics["loss_g"]
    assert losses[10.0] > losses[0.0] + 1.0  # L1 terms of ~0.5 each, times the weights


# ---- config, export, sampling -----------------------------------------------------------------------
def test_translation_with_a_points_architecture_exits_2(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "data": "digits-translation", "model": {"architecture": "mlp"}}))
    assert cli.main(["trial", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "model.architecture: data.dataset digits-translation trains image-to-image networks: resnet or dcgan" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_registered_translator_maps_images_to_images_without_ganpipe(tmp_path):
    import mlflow

    from ganpipe import tracking

    trainer = make_trainer(small(steps=10))
    trainer.train()
    uri, _ = register_export(tmp_path, trainer, "tr")
    with tracking.fluent_tracking_uri(uri):
        info = mlflow.models.get_model_info("models:/tr/1")
    assert info.metadata["ganpipe_kind"] == "translator"
    assert list(info.signature.inputs.inputs[0].shape) == [-1, 3, 8, 8]
    assert list(info.signature.outputs.inputs[0].shape) == [-1, 3, 8, 8]
    code = ("import sys, mlflow, torch; sys.modules['ganpipe'] = None; mlflow.set_tracking_uri(sys.argv[1]);"
            "m = mlflow.pytorch.load_model('models:/tr/1'); print(tuple(m(torch.zeros(7, 3, 8, 8)).shape))")
    proc = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(7, 3, 8, 8)"
    # ganpipe sample translates the task's source images and draws source above translation
    assert cli.main(["sample", "models:/tr/1", "-n", "12", "--tracking-uri", uri, "-o", str(tmp_path / "t.png")]) == 0
    assert cli.main(["sample", "models:/tr/1", "-n", "5", "--tracking-uri", uri, "-o", str(tmp_path / "t.npy")]) == 0
    assert os.environ.get("MLFLOW_TRACKING_URI") is None  # `sample` put the tracking URI back
    assert np.load(tmp_path / "t.npy").shape == (5, 3, 8, 8)


@pytest.mark.slow
def test_shipped_translation_sweep_first_trial_keeps_content_and_reaches_the_target_domain(tmp_path):
    out = tmp_path / "tr"
    # 1000 of the shipped 1500 steps keeps CI short; the full run is in docs/image-tasks.md
    assert cli.main(["trial", str(ROOT / "sweeps" / "translation.yaml"), "--out", str(out), "--threads", "1",
                     "--set", "train.steps=1000"]) == 0
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    assert metrics["content_kept"] >= 0.8
    assert metrics["fid"] < metrics["fid_source"] / 5
    assert (out / "samples" / "step-0001000.png").stat().st_size > 0
