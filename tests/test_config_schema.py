"""ganpipe.config.schema: what each field allows lives on the field (metadata), and the registry names
config writes statically (it imports nothing above itself) never drift from the registries."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ganpipe
from ganpipe.config import schema
from ganpipe.config.values import constraint


def test_the_static_names_are_the_registries():
    from ganpipe.data import DATASETS
    from ganpipe.losses import LOSSES
    from ganpipe.nets import ARCHITECTURES, CONDITIONAL_ARCHITECTURES
    from ganpipe.nets.translation import TRANSLATION_ARCHITECTURES
    from ganpipe.train.optim import OPTIMIZERS

    assert schema.DATASETS == tuple(DATASETS)
    assert schema.ARCHITECTURES == tuple(ARCHITECTURES)
    assert schema.CONDITIONAL_ARCHITECTURES == tuple(CONDITIONAL_ARCHITECTURES)
    assert schema.TRANSLATION_ARCHITECTURES == tuple(TRANSLATION_ARCHITECTURES)
    assert schema.LOSSES == tuple(LOSSES)
    assert schema.OPTIMIZERS == tuple(OPTIMIZERS)


def test_the_labelled_builtin_datasets_are_the_ones_with_classes():
    from ganpipe.data import get_dataset

    builtin = [d for d in schema.DATASETS if d not in schema.FILE_DATASETS + schema.TRANSLATION_DATASETS]
    assert [d for d in builtin if get_dataset(d).n_classes > 1] == list(schema.LABELLED_BUILTIN)


def test_the_named_choices_are_on_the_fields():
    assert schema.metadata("data.dataset")["choices"] == schema.DATASETS
    assert schema.metadata("search.scheduler.compare") == {"what": "scheduler comparison", "choices": ("best", "last")}
    assert schema.metadata("loss.gp_weight")["only_when"] == ("loss.name", ("wgan-gp",))
    assert schema.metadata("no.such") == {} and schema.metadata("data") == {}
    assert set(schema.keys_with("only_when")) == {"loss.gp_weight", "optimizer.beta1", "optimizer.beta2",
                                                  "loss.cycle_weight", "loss.identity_weight"}


@pytest.mark.parametrize("key,value,message", [
    ("data.dataset", "nope", "unknown dataset 'nope'; valid: " + ", ".join(schema.DATASETS)),
    ("model.architecture", "vit", "unknown architecture 'vit'; valid: mlp, dcgan, resnet"),
    ("loss.name", "x", "unknown loss 'x'; valid: bce, ns, wgan-gp, hinge, lsgan"),
    ("optimizer.name", "sgd", "unknown optimizer 'sgd'; valid: adam, rmsprop"),
    ("search.objectives", ["diversity"], "must be [] (the dataset's default), [mode_tv], [fid], [kid], "
                                         "[fid, diversity] or [kid, diversity], got [diversity]"),
    ("data.image_size", 30, "must be 0 (native) or a size the networks can make, 4 or 7 times a power of 2 "
                            "(8, 14, 16, 28, 32, 64, ...), got 30"),
    ("data.image_size", -1, "must be >= 0, got -1"),
    ("data.channels", 2, "must be 0 (native), 1 or 3, got 2"),
    ("eval.num_samples", 5, "must be 0 (the dataset's protocol default) or more than k=5 (k-NN radii), got 5"),
    ("promote.model_name", "a/b", "must be empty or 1-100 letters, digits, '.', '_' or '-', starting with a letter "
                                  "or digit; got 'a/b'"),
    ("optimizer.lr_g", float("inf"), "must be finite"),
    ("promote.max_fid", 0.0, "must be > 0, got 0.0"),
    ("model.ema_decay", 1.0, "must be in [0, 1), got 1.0"),
])
def test_constraint_messages_come_from_the_metadata(key, value, message):
    assert constraint(key, value) == message


@pytest.mark.parametrize("key,value", [("promote.max_fid", float("inf")), ("data.image_size", 28),
                                       ("eval.num_samples", 0), ("promote.model_name", ""), ("data.channels", 3)])
def test_allowed_values_pass(key, value):
    assert constraint(key, value) is None


def test_config_imports_nothing_above_itself():
    """Not even inside a function: config is the bottom layer (ganpipe.preflight brings the disk in)."""
    above = ("ganpipe.data", "ganpipe.nets", "ganpipe.losses", "ganpipe.train", "ganpipe.metrics", "ganpipe.tune",
             "ganpipe.preflight", "ganpipe.pipeline", "ganpipe.tracking")
    for path in (Path(ganpipe.__file__).parent / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(above)], (path.name, names)
