"""ganpipe.train.export: a checkpoint's generator exported without a Trainer gives what Trainer.export() gives,
and builds neither a dataset (GANs) nor an evaluation protocol."""
from __future__ import annotations

import pytest
import torch

from ganpipe.config.schema import DataConfig, EvalConfig, ModelConfig, TrainConfig, TrialConfig
from ganpipe.data import get_dataset
from ganpipe.data.registry import BUILTIN
from ganpipe.train import make_trainer
from ganpipe.train.export import BUILTIN_SHAPES, class_names, export_generator, facts_from_checkpoint, plain_torch

CASES = {
    "point-mlp": TrialConfig(data=DataConfig("ring8"), model=ModelConfig(architecture="mlp", latent_dim=4, width=8,
                                                                          ema_decay=0.9),
                             train=TrainConfig(steps=3, batch_size=16), eval=EvalConfig(every=3, num_samples=100)),
    "point-mlp-no-ema": TrialConfig(data=DataConfig("grid25"), model=ModelConfig(architecture="mlp", latent_dim=4,
                                                                                 width=8, ema_decay=0.0),
                                    train=TrainConfig(steps=3, batch_size=16), eval=EvalConfig(every=3, num_samples=100)),
    "conditional-dcgan": TrialConfig(data=DataConfig("digits"), model=ModelConfig(architecture="dcgan", latent_dim=8,
                                                                                  width=8, ema_decay=0.9, conditional=True),
                                     train=TrainConfig(steps=3, batch_size=16), eval=EvalConfig(every=3, num_samples=200)),
    "translator": TrialConfig(data=DataConfig("digits-translation"), model=ModelConfig(architecture="resnet", width=8,
                                                                                        ema_decay=0.9),
                              train=TrainConfig(steps=3, batch_size=8), eval=EvalConfig(every=3)),
}


def _no_protocol(monkeypatch) -> None:
    """From here on, building an evaluation protocol (or, with data=True, any dataset) raises."""
    from ganpipe.metrics import Evaluator
    from ganpipe.metrics.translation import TranslationEvaluator

    def refuse(*args, **kwargs):
        raise AssertionError("export built an evaluation protocol")

    monkeypatch.setattr(Evaluator, "__init__", refuse)
    monkeypatch.setattr(TranslationEvaluator, "__init__", refuse)


class _NoData(dict):
    def __contains__(self, name):
        raise AssertionError(f"export looked up dataset {name!r}")

    __getitem__ = __contains__


@pytest.mark.parametrize("case", list(CASES))
def test_export_generator_gives_what_the_trainer_exports_without_building_it(tmp_path, monkeypatch, case):
    trainer = make_trainer(CASES[case])
    for _ in range(3):  # G (and its EMA) away from their initial weights, no evaluation needed
        trainer._train_step()
    ckpt = trainer.save_checkpoint(tmp_path / "ck")
    expected_model, expected_example, expected_meta = trainer.export()

    _no_protocol(monkeypatch)
    if case != "translator":  # a translator's example input is the task's (bundled) source images
        import ganpipe.data.registry

        monkeypatch.setattr(ganpipe.data.registry, "DATASETS", _NoData())
    before = torch.get_rng_state()
    model, example, meta = export_generator(ckpt)
    assert torch.equal(before, torch.get_rng_state())  # building the networks left the global RNG alone

    assert meta == expected_meta
    assert torch.equal(example, expected_example)
    assert not model.training and isinstance(model, torch.fx.GraphModule) and model.code == expected_model.code
    with torch.no_grad():
        assert torch.equal(model(example), expected_model(expected_example))
    kind = {"translator": "translator", "conditional-dcgan": "conditional-generator"}.get(case, "generator")
    assert meta["ganpipe_kind"] == kind
    if trainer.ema is not None:  # the EMA copy is what ships, not G
        exported = model.generator if kind == "conditional-generator" else model
        shipped = trainer.generator.state_dict()
        assert all(torch.equal(v, shipped[k]) for k, v in exported.state_dict().items())
        raw = trainer.g["ab"] if kind == "translator" else trainer.g
        assert any(not torch.equal(v, raw.state_dict()[k]) for k, v in exported.state_dict().items()
                   if v.is_floating_point())


def test_builtin_shapes_are_the_datasets_shapes():
    assert set(BUILTIN_SHAPES) == set(BUILTIN)
    for name, shape in BUILTIN_SHAPES.items():
        assert get_dataset(name).shape == shape


def test_file_data_facts_come_from_the_protocol_record_and_the_class_folders(tmp_path):
    for c in ("cat", "dog", ".hidden", "empty"):
        (tmp_path / c).mkdir()
    for c in ("cat", "dog"):
        (tmp_path / c / "a.png").write_bytes(b"")  # listed, never opened
    cfg = TrialConfig(data=DataConfig("image-folder", root=str(tmp_path), image_size=16),
                      model=ModelConfig(architecture="dcgan", conditional=True))
    protocol = {"data": {"image_size": 16, "channels": 3}, "conditional": {"labels": "balanced", "n_classes": 2}}
    facts = facts_from_checkpoint(cfg, protocol)
    assert (facts.name, facts.shape, facts.n_classes, facts.classes) == ("image-folder", (3, 16, 16), 2, ("cat", "dog"))
    cifar = TrialConfig(data=DataConfig("cifar10", root=str(tmp_path)), model=ModelConfig(architecture="dcgan"))
    assert facts_from_checkpoint(cifar, {"data": {"image_size": 32, "channels": 3}}).n_classes == 0
    assert class_names(cifar)[:2] == ("airplane", "automobile")
    mnist = TrialConfig(data=DataConfig("mnist", root=str(tmp_path)))
    assert class_names(mnist) == ()  # the default names "0".."9", as the loaded dataset's


@pytest.mark.parametrize("arch,dataset,conditional", [
    ("mlp", "ring8", False), ("dcgan", "ring8", False), ("resnet", "grid25", False), ("mlp", "digits", False),
    ("dcgan", "digits", False), ("resnet", "stacked-digits", False), ("dcgan", "digits", True), ("resnet", "digits", True),
])
def test_plain_torch_is_the_same_generator_in_torch_layers_any_batch_size(arch, dataset, conditional):
    import io
    import pickle

    from ganpipe.nets import LabelledSampler, build_networks

    torch.manual_seed(0)
    cfg = ModelConfig(architecture=arch, latent_dim=8, width=8, conditional=conditional)
    g, _ = build_networks(cfg, BUILTIN_SHAPES[dataset], 10 if conditional else 0)
    k = 10 if conditional else 0

    def draw(n):
        z = torch.randn(n, 8)
        return torch.cat([z, torch.nn.functional.one_hot(torch.arange(n) % 10, 10).float()], 1) if k else z

    eager = LabelledSampler(g, 8) if k else g
    with torch.no_grad():
        eager.train()(draw(64))  # BatchNorm's running statistics away from 0 and 1
    plain = plain_torch(eager)
    assert not plain.training and not eager.training
    assert plain.state_dict().keys() == eager.state_dict().keys()
    with torch.no_grad():
        for n in (1, 7, 300):
            x = draw(n)
            assert torch.equal(plain(x), eager(x))

    class NoGanpipe(pickle.Unpickler):
        def find_class(self, module, name):
            assert not module.startswith("ganpipe"), f"{module}.{name}"
            return super().find_class(module, name)

    again = NoGanpipe(io.BytesIO(pickle.dumps(plain))).load()
    x = draw(5)
    with torch.no_grad():
        assert torch.equal(again(x), eager(x))
