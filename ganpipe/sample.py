"""`ganpipe sample`: samples from a registered model (models:/NAME@ALIAS, runs:/...) or a checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpipe.viz import save_samples_png


def load_generator(source: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, dict]:
    """(model, metadata) from an MLflow model URI or a ganpipe checkpoint file/folder.

    metadata["ganpipe_kind"] says what the model's one input is (Trainer.export): "generator"
    (z), "conditional-generator" ([z | class weights]), "translator" (source-domain images);
    latent_dim and n_classes its sizes.
    """
    if "://" in source or source.startswith(("models:/", "runs:/")):
        import mlflow

        from ganpipe.tracking import fluent_tracking_uri

        with fluent_tracking_uri(tracking_uri):
            info = mlflow.models.get_model_info(source)
            meta = dict(info.metadata or {})
            if "ganpipe_kind" not in meta:  # registered before metadata was written: a plain generator
                meta = {"ganpipe_kind": "generator", "latent_dim": int(info.signature.inputs.inputs[0].shape[1])}
            return mlflow.pytorch.load_model(source), meta
    from ganpipe.train.loop import Trainer

    model, _, meta = Trainer.from_checkpoint(source).export()
    return model, meta


def model_input(meta: dict, n: int, seed: int, label: int | None = None) -> torch.Tensor:
    """The input of n samples: z from `seed`, plus one-hot classes (`label`, or every class in turn)."""
    from ganpipe.metrics import fixed_labels

    if meta["ganpipe_kind"] == "translator":  # the task's source images, from `seed` on
        if label is not None:
            raise ValueError("--label is for class-conditional models; this one is a translator")
        from ganpipe.data import get_dataset

        source = get_dataset(meta["dataset"]).source
        idx = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n]
        return source.to_float(source.images[idx])
    z = torch.randn(n, int(meta["latent_dim"]), generator=torch.Generator().manual_seed(seed))
    if meta["ganpipe_kind"] != "conditional-generator":
        if label is not None:
            raise ValueError("--label is for class-conditional models; this one is unconditional")
        return z
    k = int(meta["n_classes"])
    if label is not None and not 0 <= label < k:
        raise ValueError(f"--label must be in 0..{k - 1} (classes: {', '.join(meta.get('classes', []))}), got {label}")
    labels = torch.full((n,), label) if label is not None else fixed_labels(n, k)
    return torch.cat([z, torch.nn.functional.one_hot(labels, k).float()], dim=1)


def run_sample(source: str, n: int, out: str, seed: int, tracking_uri: str | None = None,
               label: int | None = None) -> Path:
    model, meta = load_generator(source, tracking_uri)
    x = model_input(meta, n, seed, label)
    with torch.no_grad():
        samples = model(x)
    path = Path(out)
    if path.suffix == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, samples.numpy())
    elif meta["ganpipe_kind"] == "translator":
        from ganpipe.train.translate import pairs_for_grid

        grid = pairs_for_grid(x, samples, n=len(x))
        save_samples_png(grid, path, f"{source}: source above translation", max_images=len(grid), ncol=10)
    else:
        by_class = meta["ganpipe_kind"] == "conditional-generator" and label is None
        title = f"{source} (n={n}, seed {seed}" + (f", class {label})" if label is not None else ")")
        save_samples_png(samples, path, title, max_images=n, ncol=int(meta["n_classes"]) if by_class else None)
    return path
