"""A registered generator used as a PyTorch user uses it (issue 18 item 6): in a fresh process where ganpipe
cannot be imported, mlflow.pytorch.load_model("models:/NAME@champion") gives an nn.Module that takes .eval(),
.to(device), .parameters() and any batch size, and draws what the trained generator draws."""
from __future__ import annotations

import json
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import experiment_in, register_export
from ganpipe import cli
from ganpipe.config.schema import DataConfig, EvalConfig, ModelConfig, TrainConfig, TrialConfig
from ganpipe.train import make_trainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a real sqlite store, real registrations: ~1 min

BATCHES = (1, 7, 300)
CASES = {  # model name -> a real trainer's config (trained a few steps, off its initial weights)
    "ring8": TrialConfig(data=DataConfig("ring8"), model=ModelConfig(architecture="mlp", latent_dim=4, width=16,
                                                                      ema_decay=0.9),
                         train=TrainConfig(steps=20, batch_size=32), eval=EvalConfig(every=20, num_samples=100)),
    "digits": TrialConfig(data=DataConfig("digits"), model=ModelConfig(architecture="resnet", latent_dim=8, width=8),
                          train=TrainConfig(steps=4, batch_size=16), eval=EvalConfig(every=4, num_samples=200)),
    "digits-cond": TrialConfig(data=DataConfig("digits"), model=ModelConfig(architecture="dcgan", latent_dim=8, width=8,
                                                                            ema_decay=0.9, conditional=True),
                               train=TrainConfig(steps=4, batch_size=16), eval=EvalConfig(every=4, num_samples=200)),
}

# what a user runs: ganpipe is not on the path (-I: no cwd, no PYTHONPATH; -S: no .pth, so no editable
# install), and not importable at all (an installed copy, too); torch and mlflow from this environment
USER = """
import json, sys
sys.path += {site}
sys.modules["ganpipe"] = None
try:
    import ganpipe
    sys.exit("ganpipe is importable")
except ImportError:
    pass
import mlflow, torch
mlflow.set_tracking_uri({uri!r})
inputs = torch.load({inputs!r})
got = {{}}
for name in inputs:
    g = mlflow.pytorch.load_model(f"models:/{{name}}@champion")
    was_training = g.training
    g.train()
    g.eval()
    assert g.to("cpu") is g and g.to(torch.device("cpu"), torch.float32) is g
    params = list(g.parameters())
    with torch.no_grad():
        outs = [g(x) for x in inputs[name]]
    got[name] = {{"kind": [isinstance(g, torch.nn.Module), isinstance(g, torch.fx.GraphModule)],
                 "was_training": was_training,
                 "training": g.training, "n_params": len(params),
                 "param_dtypes": sorted({{str(p.dtype) for p in params}}),
                 "shapes": [list(y.shape) for y in outs], "dtypes": sorted({{str(y.dtype) for y in outs}}),
                 "min": min(float(y.min()) for y in outs), "max": max(float(y.max()) for y in outs)}}
    torch.save(outs, {outputs!r} + name)
print(json.dumps({{"models": got, "ganpipe": [m for m in sys.modules if m.startswith("ganpipe.")]}}))
"""


def _input(trainer, n: int, seed: int) -> torch.Tensor:
    z = torch.randn(n, trainer.cfg.model.latent_dim, generator=torch.Generator().manual_seed(seed))
    if not trainer.n_classes:
        return z
    return torch.cat([z, torch.nn.functional.one_hot(torch.arange(n) % trainer.n_classes, trainer.n_classes).float()], 1)


def _in_process(trainer, x: torch.Tensor) -> torch.Tensor:
    """The trained generator itself (the EMA copy where kept), not the exported module."""
    g, latent = trainer.generator.eval(), trainer.cfg.model.latent_dim
    with torch.no_grad():
        return g(x[:, :latent], x[:, latent:]) if trainer.n_classes else g(x)


@pytest.fixture(scope="module")
def champions(tmp_path_factory):
    """Each case trained a few steps, registered through ganpipe's register path and made champion."""
    folder = tmp_path_factory.mktemp("registry")
    trained = {}
    for name, cfg in CASES.items():
        trainer = make_trainer(cfg)
        for _ in range(cfg.train.steps):
            trainer._train_step()
        uri, version = register_export(folder, trainer, name)
        MlflowClient(uri).set_registered_model_alias(name, "champion", version.version)
        trained[name] = trainer
    return folder, uri, trained


def test_champion_is_a_torch_module_without_ganpipe_and_draws_what_the_generator_draws(champions, tmp_path):
    folder, uri, trained = champions
    inputs = {name: [_input(t, n, seed) for seed, n in enumerate(BATCHES)] for name, t in trained.items()}
    torch.save(inputs, tmp_path / "inputs.pt")
    code = USER.format(site=site.getsitepackages(), uri=uri, inputs=str(tmp_path / "inputs.pt"),
                       outputs=str(tmp_path / "out-"))
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["ganpipe"] == []
    for name, trainer in trained.items():
        m = got["models"][name]
        shape = list(trainer.dataset.shape)
        assert m["kind"] == [True, True]  # an nn.Module: a torch.fx GraphModule of torch layers
        assert not m["was_training"] and not m["training"]
        assert m["n_params"] > 0 and m["param_dtypes"] == ["torch.float32"]
        assert m["shapes"] == [[n, *shape] for n in BATCHES] and m["dtypes"] == ["torch.float32"]
        assert -1.0 <= m["min"] <= m["max"] <= 1.0
        outs = torch.load(tmp_path / f"out-{name}")
        for x, y in zip(inputs[name], outs, strict=True):
            torch.testing.assert_close(y, _in_process(trainer, x), rtol=1e-5, atol=1e-6)


def test_the_registered_version_keeps_its_signature_and_metadata_and_needs_only_torch(champions, tmp_path):
    folder, uri, trained = champions
    mlflow.set_tracking_uri(uri)
    for name, trainer in trained.items():
        info = mlflow.models.get_model_info(f"models:/{name}@champion")
        k, latent = trainer.n_classes, trainer.cfg.model.latent_dim
        assert info.signature.inputs.inputs[0].shape == (-1, latent + k)
        assert info.signature.outputs.inputs[0].shape == (-1, *trainer.dataset.shape)
        assert info.metadata["ganpipe_kind"] == ("conditional-generator" if k else "generator")
        assert info.metadata["latent_dim"] == latent and info.metadata.get("n_classes", 0) == k
        saved = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / name)))
        # the "pickle" format with the standard pickle module (no cloudpickle): torch is all it needs
        assert (saved / "data" / "pickle_module_info.txt").read_text() == "pickle"
        assert (saved / "data" / "model.pth").is_file() and not (saved / "data" / "model.pt2").exists()
        requirements = (saved / "requirements.txt").read_text().split()
        assert sorted(line.split("==")[0] for line in requirements) == ["mlflow", "torch"]  # MLflow adds itself


def test_ganpipe_sample_draws_from_the_champion(champions, tmp_path):
    folder, uri, _ = champions
    for name, n in (("ring8", 64), ("digits-cond", 20)):
        out = tmp_path / f"{name}.png"
        assert cli.main(["sample", f"models:/{name}@champion", "-n", str(n), "-o", str(out), "--tracking-uri", uri]) == 0
        assert out.stat().st_size > 0


def test_reading_a_model_leaves_nothing_in_the_temp_folder(champions, tmp_path, monkeypatch):
    """MLflow's get_model_info and pytorch.load_model download into temp folders they never remove (with a
    tracking server, each `ganpipe sample` left the whole model there); with this local store, before, a runs:/
    URI's MLmodel was left (3 folders here)."""
    from ganpipe import tracking

    folder, uri, _ = champions
    c = MlflowClient(uri)
    run_id = c.get_model_version_by_alias("ring8", "champion").run_id
    logged = c.search_logged_models([c.get_run(run_id).info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    sources = ["models:/ring8@champion", "models:/ring8/1", f"runs:/{run_id}/generator",
               f"models:/{logged[0].model_id}"]  # the last: MLflow 3's logged model, which Model.load resolves
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    for source in sources:
        assert tracking.model_info(uri, source).metadata["ganpipe_kind"] == "generator"
        model, meta, shape = tracking.load_model(uri, source)
        assert meta["latent_dim"] == shape[1] and model(torch.zeros(3, shape[1])).shape == (3, 2)
    assert cli.main(["sample", sources[0], "-n", "8", "-o", str(tmp_path / "s.png"), "--tracking-uri", uri]) == 0
    assert sorted(p.name for p in temp.iterdir()) == []


def test_versions_registered_before_in_pt2_still_sample(tmp_path):
    """A registry from before: the eager G logged in the pt2 format (whose module refuses .eval())."""
    from mlflow.models import infer_signature

    from ganpipe import tracking

    trainer = make_trainer(CASES["ring8"])
    g, example = trainer.generator.eval(), _input(trainer, 4, 0)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), g(example).numpy())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = tracking.client(uri)
    run_id = tracking.start_parent_run(c, experiment_in(tmp_path, c, "old"), "r", {})
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(g, name="generator", signature=signature, input_example=example.numpy(),
                                        serialization_format="pt2", pip_requirements=["torch"],
                                        metadata={"ganpipe_kind": "generator", "latent_dim": 4, "dataset": "ring8"})
    version = mlflow.register_model(info.model_uri, "old")
    c.set_registered_model_alias("old", "champion", version.version)
    for out in ("grid.png", "s.npy"):
        assert cli.main(["sample", "models:/old@champion", "-n", "64", "-o", str(tmp_path / out), "--tracking-uri", uri]) == 0
    import numpy as np

    drawn = np.load(tmp_path / "s.npy")
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))  # ganpipe sample's default seed 0
    with torch.no_grad():
        np.testing.assert_allclose(drawn, g(z).numpy(), rtol=1e-5, atol=1e-6)


def test_a_model_that_would_need_ganpipe_to_load_is_refused_before_anything_is_logged(tmp_path):
    from ganpipe import tracking

    trainer = make_trainer(CASES["ring8"])
    eager, example = trainer.generator.eval(), _input(trainer, 4, 0)  # ganpipe's own module class
    with pytest.raises(ValueError, match="would need ganpipe to load"):
        tracking.register_generator(f"sqlite:///{tmp_path / 'mlflow.db'}", "no-run", "ring8", eager, example, {}, {})
    assert not (tmp_path / "mlflow.db").exists()
