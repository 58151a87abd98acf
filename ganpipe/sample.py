"""`ganpipe sample`: samples from a registered model (models:/NAME@ALIAS, runs:/...) or a checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpipe.config.errors import ConfigError, Problem
from ganpipe.viz import save_samples_png

OUTPUTS = (".png", ".npy")  # what run_sample writes: a grid or scatter image, or the raw samples
MAX_GRID = 1024  # images in one PNG grid (32 x 32 of them); more go to .npy
SOURCES = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/generator or a ganpipe checkpoint file or folder"


def is_model_uri(source: str) -> bool:
    return "://" in source or source.startswith(("models:/", "runs:/"))


def check_inputs(source: str, out: str, tracking_uri: str) -> None:
    """One ConfigError for everything wrong with `source` and `out`, before anything is loaded or written."""
    problems = []
    if Path(out).suffix not in OUTPUTS:  # exactly: np.save would add .npy to out.NPY
        problems.append(Problem("-o", "out", f"{out} must end in {' or '.join(OUTPUTS)}"))
    if is_model_uri(source):
        problems += _model_problems(source, tracking_uri)
    else:
        why = _checkpoint_problem(source)
        problems += [Problem(source, "source", why)] if why else []
    if problems:
        raise ConfigError(problems)


def _checkpoint_problem(source: str) -> str | None:
    from ganpipe.train.checkpoint import FILENAME, checkpoint_file, read_checkpoint

    path = checkpoint_file(source)
    if Path(source).is_dir() and not path.is_file():
        return f"the folder holds no {FILENAME}"
    if not path.is_file():
        return f"no such file or folder; expected {SOURCES}"
    try:
        read_checkpoint(path)  # read twice (again to load): the price of one line instead of torch's traceback
    except Exception as err:  # torch.load fails on other files in many ways (UnpicklingError, EOFError, KeyError...)
        why = str(err).splitlines()[0] if isinstance(err, ValueError) else f"{type(err).__name__} reading it"
        return f"not a ganpipe checkpoint ({why})"
    return None


def _model_problems(source: str, uri: str) -> list[Problem]:
    from ganpipe import tracking

    if source.startswith(("models:/", "runs:/")):  # looked up in the tracking store
        if tracking.store_missing(uri):
            return [Problem(source, "source", f"not found: the tracking store {uri} does not exist "
                            "(--tracking-uri, $MLFLOW_TRACKING_URI)")]
        why = tracking.check_reachable(uri)
        if why:
            return [Problem("--tracking-uri", "tracking.uri", why)]
    ref = source[len("models:/"):] if source.startswith("models:/") else ""
    if "@" in ref or "/" in ref:  # models:/NAME@ALIAS or models:/NAME/VERSION (models:/ID is a logged model)
        c = tracking.client(uri)
        name, _, alias = ref.split("/")[0].partition("@")
        model = tracking.registered_model(c, name)
        if model is None:
            known = tracking.some_names(tracking.registered_model_names(c, 11))
            return [Problem(source, "source", f"no registered model {name!r} in {uri} (registered: {known})")]
        if alias and alias not in model.aliases:
            return [Problem(source, "source", f"model {name!r} has no alias {alias!r} "
                            f"(aliases: {', '.join(sorted(model.aliases)) or 'none'})")]
    try:
        tracking.model_info(uri, source)
    except tracking.ModelNotFound as err:  # no such version, run or artifact: MLflow's one-line reason
        hint = ""
        run_id = source[len("runs:/"):].split("/")[0] if source.startswith("runs:/") else ""
        if run_id and tracking.find_run(tracking.client(uri), run_id) is not None:
            # a trial's run holds its best checkpoint, not a logged model
            hint = (f"; a trial's run keeps no model until it is promoted, but its best checkpoint: "
                    f"mlflow artifacts download -r {run_id} -a {tracking.BEST_CHECKPOINT} -d DIR, then "
                    "ganpipe sample DIR")
        return [Problem(source, "source", f"{err}{hint}")]
    except tracking.TrackingUnavailable:  # the store failed to answer: no fact about the source (exit 1)
        raise
    except Exception as err:  # noqa: BLE001 - a URI MLflow cannot even parse (http://x, s3:/...) fails otherwise
        return [Problem(source, "source", f"not a model MLflow can open ({type(err).__name__}: {err}); "
                                          f"expected {SOURCES}")]
    return []


def load_generator(source: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, dict]:
    """(model, metadata) from an MLflow model URI or a ganpipe checkpoint file/folder.

    metadata["ganpipe_kind"] says what the model's one input is (ganpipe.train.export): "generator"
    (z), "conditional-generator" ([z | class weights]), "translator" (source-domain images);
    latent_dim and n_classes its sizes.
    """
    if is_model_uri(source):
        from ganpipe import tracking

        model, meta, input_shape = tracking.load_model(tracking_uri, source)
        if "ganpipe_kind" not in meta:  # registered before metadata was written: a plain generator
            meta = {"ganpipe_kind": "generator", "latent_dim": int(input_shape[1])}
        return model, meta
    from ganpipe.train.export import export_generator

    model, _, meta = export_generator(source)
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
    from ganpipe.tracking import resolve_uri

    tracking_uri = resolve_uri(tracking_uri)  # the store checked is the store loaded from
    check_inputs(source, out, tracking_uri)
    model, meta = load_generator(source, tracking_uri)
    x = model_input(meta, n, seed, label)
    with torch.no_grad():
        samples = model(x)
    path = Path(out)
    if samples.dim() == 4 and path.suffix == ".png" and n > MAX_GRID:
        raise ConfigError([Problem("-n", "n", f"{n} images do not fit a readable PNG grid (at most {MAX_GRID}); "
                                              f"write them with -o {path.with_suffix('.npy')}")])
    try:
        _write(path, samples, x, meta, source, n, seed, label)
    except OSError as err:  # a folder that cannot be made or written: one line, not a traceback
        raise ConfigError([Problem("-o", "out", f"cannot write {path}: {err.strerror or err}")]) from None
    return path


def _write(path: Path, samples: torch.Tensor, x: torch.Tensor, meta: dict, source: str, n: int, seed: int,
           label: int | None) -> None:
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
        save_samples_png(samples, path, title, max_images=n, ncol=int(meta["n_classes"]) if by_class else None,
                         modes=_modes(meta) if samples.dim() == 2 else None)


def _modes(meta: dict) -> tuple[torch.Tensor, float] | None:
    """The true modes of the 2-D dataset a generator was trained on (its metadata names it), if known."""
    from ganpipe.data import get_dataset
    from ganpipe.viz import mode_marks

    try:
        return mode_marks(get_dataset(meta["dataset"]))
    except (KeyError, ValueError, TypeError):  # an older model without a dataset name, or an unknown one
        return None
