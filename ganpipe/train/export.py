"""What a promotion registers and `ganpipe sample` loads: the shipped generator as one module with one
tensor input, an example input, and metadata (`ganpipe_kind` generator, conditional-generator or translator).
The module is plain torch (plain_torch): it pickles, and loads, without ganpipe.

    model, example, metadata = export_generator(checkpoint_path)   # no Trainer, no Evaluator
    model, example, metadata = trainer.export()                    # the same code, on a live trainer

export_generator builds only the networks of the checkpoint's config (ganpipe.nets) and loads G's weights,
its EMA copy's when the config keeps one (G_AB's for a translator). No evaluation protocol is built and, for
a GAN, no data is read: the sample shape comes from the built-in datasets' fixed shapes or, for data read
from files, from the checkpoint's protocol record (image size, channels), the number of classes of a
conditional G from the protocol too. Class names are the data's: digits and MNIST-style files "0".."9",
CIFAR-10's ten names, an image folder's class sub-folders (listed, not read). A translator's example input
is the task's first source images: bundled data, read without its protocol or feature network.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganpipe.config import trial_from_dict
from ganpipe.config.schema import TrialConfig
from ganpipe.metrics import fixed_labels
from ganpipe.nets import LabelledSampler, build_networks
from ganpipe.nets.images import ClassEmbedding
from ganpipe.nets.translation import build_translation_networks
from ganpipe.train.checkpoint import read_checkpoint
from ganpipe.train.ema import make_ema

# one sample's shape of every built-in dataset (tests/test_export.py checks them against ganpipe.data)
BUILTIN_SHAPES: dict[str, tuple[int, ...]] = {
    "ring8": (2,), "grid25": (2,), "digits": (1, 8, 8), "stacked-digits": (3, 8, 8), "digits-translation": (3, 8, 8),
}
EXAMPLE_SIZE = 4


@dataclass(frozen=True)
class DataFacts:
    """What an exported GAN generator needs of its data: registry name, sample shape, classes (conditional G)."""

    name: str
    shape: tuple[int, ...]
    n_classes: int = 0  # 0: unconditional
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, dataset, n_classes: int) -> DataFacts:
        """From a loaded dataset (a Trainer's)."""
        names = tuple(getattr(dataset, "classes", ())) if n_classes else ()
        return cls(dataset.name, tuple(dataset.shape), n_classes, names)


def class_names(cfg: TrialConfig) -> tuple[str, ...]:
    """The class names a loaded dataset of cfg.data would have, without reading its images."""
    from ganpipe.data import formats

    if cfg.data.dataset == "cifar10":
        return formats.CIFAR_CLASSES
    if cfg.data.dataset == "image-folder":  # the class sub-folders that hold images, as the loader lists them
        return formats._folder_listing(Path(cfg.data.root).expanduser().resolve())[2]
    return ()  # digits, mnist, fashion-mnist: "0".."9" (gan_export's default)


def facts_from_checkpoint(cfg: TrialConfig, protocol: dict) -> DataFacts:
    """The data facts of a checkpoint, from its config and protocol record."""
    name = cfg.data.dataset
    if name in BUILTIN_SHAPES:
        shape = BUILTIN_SHAPES[name]
    elif "data" in protocol:  # read from files: the protocol records the data as trained on
        shape = (protocol["data"]["channels"], protocol["data"]["image_size"], protocol["data"]["image_size"])
    else:  # pragma: no cover - every file dataset's protocol has its data record
        raise ValueError(f"the checkpoint's protocol does not say the shape of {name}'s images")
    n_classes = int(protocol.get("conditional", {}).get("n_classes", 0)) if cfg.model.conditional else 0
    if cfg.model.conditional and not n_classes:  # pragma: no cover - a conditional protocol records them
        raise ValueError("the checkpoint of a conditional G does not record its number of classes")
    return DataFacts(name, shape, n_classes, class_names(cfg) if n_classes else ())


def gan_export(generator: nn.Module, latent_dim: int, data: DataFacts) -> tuple[nn.Module, torch.Tensor, dict]:
    """(model with one tensor input, example input, metadata) of a GAN's G.

    Unconditional: z (N, latent_dim) -> samples. Conditional: [z | class weights]
    (N, latent_dim + n_classes) -> samples, one-hot weights picking a class.
    """
    z = torch.randn(EXAMPLE_SIZE, latent_dim, generator=torch.Generator().manual_seed(0))
    meta = {"ganpipe_kind": "generator", "latent_dim": latent_dim, "dataset": data.name}
    if not data.n_classes:
        return plain_torch(generator), z, meta
    k = data.n_classes
    onehot = nn.functional.one_hot(fixed_labels(EXAMPLE_SIZE, k), k).float()
    classes = list(data.classes) or [str(c) for c in range(k)]
    meta.update(ganpipe_kind="conditional-generator", n_classes=k, classes=classes)
    return plain_torch(LabelledSampler(generator, latent_dim)), torch.cat([z, onehot], dim=1), meta


def translator_export(g_ab: nn.Module, dataset) -> tuple[nn.Module, torch.Tensor, dict]:
    """(G_AB, its first source images, metadata) of a translation task's dataset."""
    source = dataset.source
    example = source.to_float(source.images[:EXAMPLE_SIZE]).clone()
    meta = {"ganpipe_kind": "translator", "dataset": dataset.name, "source": source.name,
            "target": dataset.target.name, "image_shape": list(dataset.shape)}
    return plain_torch(g_ab), example, meta


def plain_torch(model: nn.Module) -> torch.fx.GraphModule:
    """`model` in eval mode as a torch.fx GraphModule of torch's own layers, with the same outputs.

    ganpipe's modules are traced through (torch.fx.symbolic_trace): what is left is torch.nn layers under
    the same names (so the same state_dict keys) and the forward as generated Python source, which is how
    a GraphModule pickles. Loading it needs torch only, and it is an ordinary nn.Module: .eval(), .to(),
    .parameters(), any batch size. A ClassEmbedding is only ever fed class weights here (LabelledSampler's
    [z | weights]), so it is traced as y @ W; optional inputs (a G's y=None) are traced at their defaults
    and dropped: the module takes the one tensor.
    (TorchScript would load without ganpipe too, but torch 2.13 warns that torch.jit.trace and script are
    deprecated; torch.export's "pt2" module refuses .eval() and .train().)
    """
    class Tracer(torch.fx.Tracer):  # local: a GraphModule keeps (and pickles) a module-level tracer class
        def call_module(self, m, forward, args, kwargs):
            if isinstance(m, ClassEmbedding):
                return args[0] @ m.weight
            return super().call_module(m, forward, args, kwargs)

    model = model.eval()
    optional = {p.name: p.default for p in list(inspect.signature(model.forward).parameters.values())[1:]
                if p.default is not inspect.Parameter.empty}
    graph = Tracer().trace(model, concrete_args=optional or None)
    for node in reversed(graph.nodes):  # the optional inputs go: no placeholder, no fx-internal None check
        if node.op == "call_function" and getattr(node.target, "__name__", "") == "_assert_is_none":
            graph.erase_node(node)
        elif node.op == "placeholder" and node.args and not node.users:  # has a default, is not read
            graph.erase_node(node)
        else:  # annotations are strings under `from __future__ import annotations`: fx would write them
            node.type = None  # into the generated source, which then cannot pickle
    return torch.fx.GraphModule(model, graph, type(model).__name__).eval()


def _shipped(g: nn.Module, cfg: TrialConfig, payload: dict) -> nn.Module:
    """G with the checkpoint's weights: its EMA copy when the config keeps one (as Trainer.generator)."""
    if cfg.model.ema_decay > 0:
        ema = make_ema(g, cfg.model.ema_decay)
        ema.load_state_dict(payload["ema"])
        return ema.module
    g.load_state_dict(payload["g"])
    return g


def export_generator(checkpoint_path: str | Path) -> tuple[nn.Module, torch.Tensor, dict]:
    """What Trainer.export() gives for the trainer of this checkpoint (on the CPU), without building it."""
    from ganpipe.data.registry import TRANSLATION_DATASETS

    payload = read_checkpoint(checkpoint_path)
    cfg = trial_from_dict(payload["config"])
    with torch.random.fork_rng(devices=[]):  # initial weights (overwritten) draw from the global RNG: leave it
        if cfg.data.dataset in TRANSLATION_DATASETS:
            from ganpipe.data import get_dataset

            dataset = get_dataset(cfg.data)
            g, _ = build_translation_networks(cfg.model, dataset.shape)
            return translator_export(_shipped(g, cfg, payload)["ab"], dataset)
        data = facts_from_checkpoint(cfg, payload["protocol"])
        g, _ = build_networks(cfg.model, data.shape, data.n_classes)
    return gan_export(_shipped(g, cfg, payload), cfg.model.latent_dim, data)
