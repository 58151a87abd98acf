"""Typed configuration of one trial and of a sweep.

A sweep YAML has the same keys as these dataclasses; any leaf of the trial sections
(data, model, loss, optimizer, train, eval) may instead be a search distribution
(see ganpipe.config.space). The dataclasses store names, not classes, so they stay
serialisable (`dataclasses.asdict`) and go into checkpoints and MLflow as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field


# ---- one trial -------------------------------------------------------------------
@dataclass
class DataConfig:
    # registry name: ring8, grid25, digits, stacked-digits, digits-translation (plain -> styled digits,
    # a CycleGAN task), mnist, fashion-mnist, cifar10, image-folder
    dataset: str = "ring8"
    root: str = ""  # folder with the files (mnist, fashion-mnist, cifar10, image-folder only); read, never downloaded
    image_size: int = 0  # 0 = native; else resized to image_size x image_size (4 or 7 times a power of 2)
    channels: int = 0  # 0 = native (1 for MNIST-like, 3 otherwise); 1 or 3 for image-folder


@dataclass
class ModelConfig:
    architecture: str = "mlp"  # registry name: mlp, dcgan, resnet
    latent_dim: int = 16  # size of z
    width: int = 128  # hidden units (points) or base channels (images)
    spectral_norm: bool = False  # spectral norm on every D layer
    ema_decay: float = 0.0  # EMA of G's weights; 0 = off, e.g. 0.999
    # class-conditional G (class embedding) and projection D; labelled image data, dcgan or resnet
    conditional: bool = False


@dataclass
class LossConfig:
    name: str = "ns"  # registry name: bce, ns, wgan-gp, hinge, lsgan
    gp_weight: float = 10.0  # lambda of the gradient penalty (wgan-gp only)
    r1_weight: float = 0.0  # R1 penalty on real data, added to any loss (wgan-gp's own penalty too); 0 = off
    # translation datasets only (CycleGAN): L1 weights of cycle consistency and identity
    cycle_weight: float = 10.0
    identity_weight: float = 5.0


@dataclass
class OptimizerConfig:
    name: str = "adam"  # registry name: adam, rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5  # adam only
    beta2: float = 0.999  # adam only


@dataclass
class TrainConfig:
    steps: int = 5000  # G steps
    batch_size: int = 128
    n_disc: int = 1  # D steps per G step
    grad_clip: float = 0.0  # max gradient norm for G and D; 0 = off
    seed: int = 0
    cuda_graphs: bool = True  # on a CUDA device, replay each step as one CUDA graph (ganpipe.train.graphs)


@dataclass
class EvalConfig:
    every: int = 1000  # G steps between evaluations (one more at the last step)
    num_samples: int = 0  # generated samples per evaluation; 0 = the dataset's protocol default
    # datasets from files: the feature classifier file (`ganpipe features train`);
    # "" = $GANPIPE_HOME/features/<dataset>-<size>x<channels>.pt (default ~/.cache/ganpipe/...);
    # "inception" = the standard FID InceptionV3 (2048-d pool features) from inception_weights
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
    name: str = "asha"  # asha or none
    metric: str = "fid"  # what ASHA compares at each rung: fid (min) or diversity (max)
    grace_period: int = 0  # G steps before ASHA may stop a trial; 0 = one evaluation interval (eval.every)
    reduction_factor: float = 2.0


@dataclass
class SearchConfig:
    num_samples: int = 8  # trials
    sampler: str = "tpe"  # tpe, random, cmaes
    seed: int = 0
    startup_trials: int = 0  # tpe: random trials before TPE models the results; 0 = Optuna's default (10)
    objectives: list[str] = field(default_factory=lambda: ["fid"])  # [fid] or [fid, diversity]
    max_concurrent: int = 2
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class ResourcesConfig:
    cpu: float = 1.0  # per trial; also the trial's torch threads
    gpu: float = 0.0  # per trial; fractions pack several trials on one GPU
    # once no trial is left to start, running trials take the idle CPUs as torch threads (one node only)
    share_idle_cpus: bool = True


@dataclass
class FailureConfig:
    max_failures: int = 2  # retries of a trial from its last checkpoint
    # checkpoints kept per trial: the top-k by fid, or 0 = all. With top-k, Tune deletes
    # checkpoints newer than its last experiment snapshot, so a trial of a SIGKILLed driver
    # can find its checkpoint gone on --resume; keep all where checkpoints are small.
    keep_checkpoints: int = 0


@dataclass
class PromoteConfig:
    enabled: bool = False
    model_name: str = ""  # registered model; "" = the sweep name
    max_fid: float = float("inf")
    min_diversity: float = 0.0
    recheck_top_k: int = 0  # 0 = no seed re-check
    recheck_seeds: int = 3


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
