"""Typed configuration of one trial and of a sweep.

A sweep YAML has the same keys as these dataclasses; any leaf of the trial sections
(data, model, loss, optimizer, train, eval) may instead be a search distribution
(see ganpipe.config.space). The dataclasses store names, not classes, so they stay
serialisable (`dataclasses.asdict`) and go into checkpoints and MLflow as they are.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any, Mapping

# ---- what a field allows, kept on the field itself (dataclasses.field(metadata=...)) --------------
#   range=(low, low inclusive, high, high inclusive)   None = unbounded
#   what=..., choices=(...)                            a named choice: "unknown <what> X; valid: a, b"
#   only_when=(deciding key, (values under which the field is used))
#   infinite=True                                      inf is a value (promote.max_fid), else "must be finite"
# Names of registries above config (data, nets, losses, train) are written here, not imported: config
# imports nothing above itself; tests/test_config_schema.py pins each list equal to its registry.
DATASETS = ("ring8", "grid25", "digits", "stacked-digits", "digits-translation",
            "mnist", "fashion-mnist", "cifar10", "image-folder")  # ganpipe.data.DATASETS
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "image-folder")  # ganpipe.data.files.FILE_DATASETS
TRANSLATION_DATASETS = ("digits-translation",)  # ganpipe.data.registry.TRANSLATION_DATASETS
LABELLED_BUILTIN = ("digits",)  # built-in datasets with class labels
ARCHITECTURES = ("mlp", "dcgan", "resnet")  # ganpipe.nets.ARCHITECTURES
CONDITIONAL_ARCHITECTURES = ("dcgan", "resnet")  # ganpipe.nets.CONDITIONAL_ARCHITECTURES
TRANSLATION_ARCHITECTURES = ("resnet", "dcgan")  # ganpipe.nets.translation.TRANSLATION_ARCHITECTURES
LOSSES = ("bce", "ns", "wgan-gp", "hinge", "lsgan")  # ganpipe.losses.LOSSES
OPTIMIZERS = ("adam", "rmsprop")  # ganpipe.train.optim.OPTIMIZERS
PRDC_K = 5  # ganpipe.metrics.constants.K: k of the k-NN balls
POINT_DATASETS = ("ring8", "grid25")  # 2-D mixtures: their evaluation reports mode_tv
# what a sweep may optimise (ganpipe.objective says how each becomes the one number that ranks); [] = the
# dataset's default (default_objectives)
OBJECTIVE_SETS = ([], ["fid"], ["kid"], ["mode_tv"], ["fid", "diversity"], ["kid", "diversity"])


def default_objectives(dataset: str) -> list[str]:
    """mode_tv on the 2-D mixtures, where FID on raw coordinates cannot see a dropped mode (a blob scores
    about as well as the real data); fid elsewhere."""
    return ["mode_tv"] if dataset in POINT_DATASETS else ["fid"]
# the special values of eval.features: the standard FID InceptionV3 instead of a trained classifier
INCEPTION_NAMES = ("inception", "inception-v3", "inceptionv3", "inception_v3", "fid-inception")


def _f(default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING, **metadata) -> Any:
    """A dataclass field with its metadata (see the table above)."""
    return field(default=default, default_factory=factory, metadata=metadata)


def _at_least(low, inclusive: bool = True) -> dict:
    return {"range": (low, inclusive, None, False)}


def supported_size(n: int) -> bool:
    """Image sizes the conv nets reach by doubling from 4 or 7: 4, 7, 8, 14, 16, 28, 32, 56, 64, ...
    (pure arithmetic, so validation needs no data module)."""
    if n < 4:
        return False
    while n % 2 == 0 and n > 7:
        n //= 2
    return n in (4, 7)


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # sweep and model names
_NAME_TEXT = "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
_SIZE_TEXT = ("must be 0 (native) or a size the networks can make, 4 or 7 times a power of 2 "
              "(8, 14, 16, 28, 32, 64, ...), got {value}")
_TRANSLATION = ("data.dataset", TRANSLATION_DATASETS)
_ADAM = ("optimizer.name", ("adam",))


# ---- one trial -------------------------------------------------------------------
@dataclass
class DataConfig:
    # registry name: ring8, grid25, digits, stacked-digits, digits-translation (plain -> styled digits,
    # a CycleGAN task), mnist, fashion-mnist, cifar10, image-folder
    dataset: str = _f("ring8", what="dataset", choices=DATASETS)
    root: str = ""  # folder with the files (mnist, fashion-mnist, cifar10, image-folder only); read, never downloaded
    # 0 = native; else resized to image_size x image_size (4 or 7 times a power of 2)
    image_size: int = _f(0, **_at_least(0), test=(lambda n: n <= 0 or supported_size(n), _SIZE_TEXT))
    # 0 = native (1 for MNIST-like, 3 otherwise); 1 or 3 for image-folder
    channels: int = _f(0, test=(lambda c: c in (0, 1, 3), "must be 0 (native), 1 or 3, got {value}"))


@dataclass
class ModelConfig:
    architecture: str = _f("mlp", what="architecture", choices=ARCHITECTURES)  # registry name: mlp, dcgan, resnet
    latent_dim: int = _f(16, **_at_least(1))  # size of z
    width: int = _f(128, **_at_least(1))  # hidden units (points) or base channels (images)
    spectral_norm: bool = False  # spectral norm on every D layer
    ema_decay: float = _f(0.0, range=(0, True, 1, False))  # EMA of G's weights; 0 = off, e.g. 0.999
    # class-conditional G (class embedding) and projection D; labelled image data, dcgan or resnet
    conditional: bool = False


@dataclass
class LossConfig:
    name: str = _f("ns", what="loss", choices=LOSSES)  # registry name: bce, ns, wgan-gp, hinge, lsgan
    # lambda of the gradient penalty (wgan-gp only)
    gp_weight: float = _f(10.0, **_at_least(0), only_when=("loss.name", ("wgan-gp",)))
    r1_weight: float = _f(0.0, **_at_least(0))  # R1 penalty on real data, added to any loss (wgan-gp's own too); 0 = off
    # translation datasets only (CycleGAN): L1 weights of cycle consistency and identity
    cycle_weight: float = _f(10.0, **_at_least(0), only_when=_TRANSLATION)
    identity_weight: float = _f(5.0, **_at_least(0), only_when=_TRANSLATION)


@dataclass
class OptimizerConfig:
    name: str = _f("adam", what="optimizer", choices=OPTIMIZERS)  # registry name: adam, rmsprop
    lr_g: float = _f(2e-4, **_at_least(0, False))
    lr_d: float = _f(2e-4, **_at_least(0, False))
    beta1: float = _f(0.5, range=(0, True, 1, False), only_when=_ADAM)  # adam only
    beta2: float = _f(0.999, range=(0, True, 1, False), only_when=_ADAM)  # adam only


@dataclass
class TrainConfig:
    steps: int = _f(5000, **_at_least(1))  # G steps
    batch_size: int = _f(128, **_at_least(1))
    n_disc: int = _f(1, **_at_least(1))  # D steps per G step
    grad_clip: float = _f(0.0, **_at_least(0))  # max gradient norm for G and D; 0 = off
    seed: int = _f(0, **_at_least(0))  # numpy / optuna seeds must be non-negative
    cuda_graphs: bool = True  # on a CUDA device, replay each step as one CUDA graph (ganpipe.train.graphs)


@dataclass
class EvalConfig:
    every: int = _f(1000, **_at_least(1))  # G steps between evaluations (one more at the last step)
    # generated samples per evaluation; 0 = the dataset's protocol default; else more than k (k-NN radii)
    num_samples: int = _f(0, **_at_least(0), test=(
        lambda n: not 0 < n <= PRDC_K,
        f"must be 0 (the dataset's protocol default) or more than k={PRDC_K} (k-NN radii), got {{value}}"))
    # datasets from files: the feature classifier file (`ganpipe features train`);
    # "" = $GANPIPE_HOME/features/<dataset>-<size>x<channels>.pt (default ~/.cache/ganpipe/...);
    # "inception" (or another of INCEPTION_NAMES) = the standard FID InceptionV3 (2048-d pool features)
    # from inception_weights
    features: str = ""
    # the FID Inception weights file (pt_inception-2015-12-05-6726825d.pth); never downloaded;
    # "" = the torch hub cache, $TORCH_HOME/hub/checkpoints/ (TORCH_HOME default ~/.cache/torch)
    inception_weights: str = ""


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---- the sweep around it -------------------------------------------------------
@dataclass
class SchedulerConfig:
    name: str = _f("asha", what="scheduler", choices=("asha", "none"))  # asha or none
    # ASHA compares the sweep's objective (ganpipe.objective) at each rung: each trial's best so far
    # (what its best checkpoint would bring to promotion) or its last evaluation
    compare: str = _f("best", what="scheduler comparison", choices=("best", "last"))
    grace_period: int = _f(0, **_at_least(0))  # G steps before ASHA may stop a trial; 0 = one evaluation interval
    reduction_factor: float = _f(2.0, **_at_least(1, False))


@dataclass
class SearchConfig:
    num_samples: int = _f(8, **_at_least(1))  # trials
    # tpe: Optuna's TPE (multivariate with one objective, Optuna's default since 5.0); tpe-group: multivariate
    # TPE on each group of parameters that occur together (conditional spaces); random; cmaes (numeric
    # parameters by CMA-ES, the others independently); gp: Gaussian-process Bayesian optimisation
    sampler: str = _f("tpe", what="sampler", choices=("tpe", "tpe-group", "random", "cmaes", "gp"))
    seed: int = _f(0, **_at_least(0))
    # tpe, tpe-group, gp: random trials before the model takes over; 0 = Optuna's default (10)
    startup_trials: int = _f(0, **_at_least(0))
    # tpe, tpe-group, gp: the first startup_trials trials (Optuna's 10 if 0) train only this many G steps
    # (to their first evaluation from it on) and the model learns from their best there; 0 = as long as any
    # trial. Under ASHA the first trials at a rung always continue, so a start-up otherwise costs full trials
    startup_steps: int = _f(0, **_at_least(0))
    # what "best" means for checkpoints, ASHA, the results table and promotion (ganpipe.objective):
    # [mode_tv], [fid], [kid], or a second objective [fid, diversity] / [kid, diversity];
    # [] = the dataset's default (mode_tv on ring8 and grid25, else fid)
    objectives: list[str] = _f(factory=list, test=(
        lambda o: o in OBJECTIVE_SETS,
        "must be [] (the dataset's default), [mode_tv], [fid], [kid], [fid, diversity] or [kid, diversity], "
        "got {value}"))
    max_concurrent: int = _f(2, **_at_least(1))
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class ResourcesConfig:
    cpu: float = _f(1.0, **_at_least(0, False))  # per trial; also the trial's torch threads
    gpu: float = _f(0.0, **_at_least(0))  # per trial; fractions pack several trials on one GPU
    # once no trial is left to start, running trials take the idle CPUs as torch threads (one node only)
    share_idle_cpus: bool = True


@dataclass
class FailureConfig:
    max_failures: int = _f(2, **_at_least(0))  # retries of a trial from its last checkpoint
    # checkpoints kept per trial: the top-k by fid, or 0 = all. With top-k, Tune deletes
    # checkpoints newer than its last experiment snapshot, so a trial of a SIGKILLed driver
    # can find its checkpoint gone on --resume; keep all where checkpoints are small.
    keep_checkpoints: int = _f(0, **_at_least(0))


@dataclass
class PromoteConfig:
    enabled: bool = False
    # registered model; "" = the sweep name. MLflow refuses '/' and ':' in model names, and '@' would
    # split models:/NAME@ALIAS
    model_name: str = _f("", test=(lambda s: not s or NAME_RE.match(s), f"must be empty or {_NAME_TEXT}; got {{value}}"))
    # the gate, on each trial's best checkpoint: finite metrics within these bounds
    max_fid: float = _f(float("inf"), range=(0, False, None, True), infinite=True)
    min_diversity: float = _f(0.0, **_at_least(0))
    max_mode_tv: float = _f(1.0, range=(0, True, 1, True))  # ring8 / grid25 only; 1 = no bound
    recheck_top_k: int = _f(0, **_at_least(0))  # 0 = no seed re-check
    recheck_seeds: int = _f(3, **_at_least(1))


@dataclass
class TrackingConfig:
    uri: str = ""  # "" = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: str = ""  # "" = the sweep name


@dataclass
class SweepConfig:
    name: str
    description: str = ""
    trial: TrialConfig = field(default_factory=TrialConfig)  # fixed values, search entries at their defaults
    space: list = field(default_factory=list)  # list[ganpipe.config.space.Param]
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    failure: FailureConfig = field(default_factory=FailureConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    source: str = ""  # the file it was loaded from


TRIAL_SECTIONS = ("data", "model", "loss", "optimizer", "train", "eval")


# ---- the schema, as types and metadata -----------------------------------------------------
@cache
def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (this module uses string annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _field(key: str) -> dataclasses.Field | None:
    """The dataclass field of a dotted key of a trial or sweep section, or None."""
    first, *rest = key.split(".")
    cls, found = fields_of(TrialConfig).get(first) or fields_of(SweepConfig).get(first), None
    for part in rest:
        if cls is None or not dataclasses.is_dataclass(cls):
            return None
        found = {f.name: f for f in dataclasses.fields(cls)}.get(part)
        cls = fields_of(cls).get(part)
    return found


def metadata(key: str) -> Mapping[str, Any]:
    """What the field at a dotted key allows (range, choices, only_when, ...); empty if nothing or unknown."""
    f = _field(key)
    return f.metadata if f is not None else MappingProxyType({})


def keys_with(name: str) -> dict[str, Any]:
    """Dotted key -> that metadata entry, for every field that has it (in schema order)."""
    out = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            typ = fields_of(cls)[f.name]
            if dataclasses.is_dataclass(typ):
                walk(typ, f"{prefix}{f.name}.")
            elif name in f.metadata:
                out[prefix + f.name] = f.metadata[name]

    walk(TrialConfig, "")
    for k, typ in fields_of(SweepConfig).items():
        if dataclasses.is_dataclass(typ) and k != "trial":
            walk(typ, f"{k}.")
    return out
