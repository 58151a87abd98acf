"""Resources and the client mode, checked before Ray starts: a trial the local Ray could never place, a
Ray Client driver whose tracking store or storage the head node cannot reach."""
from __future__ import annotations

import os

from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.schema import SweepConfig


def is_ray_client(address: str) -> bool:
    return address.startswith("ray://")


def check_client_mode(address: str | None, tracking_uri: str, given: bool) -> None:
    """With ray:// the Tune driver loop (searcher, callbacks) runs on the cluster's head node, not here: it
    writes MLflow runs and Tune results from there, so both must be places the head reaches too."""
    if not address or not is_ray_client(address):
        return
    problems = []
    if tracking_uri.startswith(("sqlite:", "file:")) or ":" not in tracking_uri:
        problems.append(Problem("--tracking-uri", "tracking.uri", f"{tracking_uri} is a file on this machine, but "
                                "with ray:// Tune's driver loop runs on the head node: give the URI of an MLflow "
                                "server (http://...) or a database both reach"))
    if not given:
        problems.append(Problem("--storage", "storage", "required with ray:// (Tune writes results from the head "
                                "node): s3://BUCKET/PREFIX or a folder the head and this machine share"))
    if problems:
        raise ConfigError(problems)


def check_local_resources(sweep: SweepConfig, num_cpus: int | None) -> None:
    """The in-process Ray this command would start: refuse a trial it could never place before starting it."""
    import torch

    cpus, gpus = num_cpus or os.cpu_count() or 1, torch.cuda.device_count()
    cpu, gpu = sweep.resources.cpu, sweep.resources.gpu
    if cpu <= cpus and gpu <= gpus:
        return
    given = "--num-cpus" if num_cpus else "this machine's cores"
    seen = "" if gpus else " (torch sees no CUDA device)"
    raise ConfigError([Problem(sweep.source or "sweep", "resources",
                               f"a trial asks for cpu {cpu:g}, gpu {gpu:g} but the local Ray has {cpus} CPUs "
                               f"({given}) and {gpus} GPUs{seen}; ask for less (e.g. --set resources.gpu=0) "
                               "or join a cluster with --address")])
