"""`ganpipe sample`: samples from a registered model (models:/NAME@ALIAS, runs:/...) or a checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpipe.viz import save_samples_png


def load_generator(source: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, int]:
    """(generator, latent_dim) from an MLflow model URI or a ganpipe checkpoint file/folder."""
    if "://" in source or source.startswith(("models:/", "runs:/")):
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        info = mlflow.models.get_model_info(source)
        latent_dim = int(info.signature.inputs.inputs[0].shape[1])
        return mlflow.pytorch.load_model(source), latent_dim
    from ganpipe.train.loop import Trainer

    trainer = Trainer.from_checkpoint(source)
    return trainer.generator.eval(), trainer.cfg.model.latent_dim


def run_sample(source: str, n: int, out: str, seed: int, tracking_uri: str | None = None) -> Path:
    generator, latent_dim = load_generator(source, tracking_uri)
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        samples = generator(z)
    path = Path(out)
    if path.suffix == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, samples.numpy())
    else:
        save_samples_png(samples, path, f"{source} (n={n}, seed {seed})", max_images=n)
    return path
