"""Best checkpoints kept with their runs, and the model registry: versions, aliases, loading."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ganpipe.tracking.errors import TrackingUnavailable, absent, describe, read_or_none
from ganpipe.tracking.resend import create_once
from ganpipe.tracking.runs import BEST_PREFIX
from ganpipe.tracking.store import TRACKING_URI_ENV

# ---- best checkpoints and the model registry -------------------------------------------
BEST_CHECKPOINT = "best_checkpoint"  # artifact folder of a child run holding its best checkpoint
SOURCE_TAG = "ganpipe.source"  # "<run id>@<step>": which checkpoint a model version came from


def log_best_checkpoint(c: MlflowClient, run_id: str, checkpoint_file: Path, metrics: dict[str, float]) -> None:
    """Keep a trial's best checkpoint with its run, so promotion needs nothing but MLflow; its metrics become
    the run's ganpipe.best.* tags (runs.BEST_PREFIX; runs.best_values reads them back)."""
    c.log_artifact(run_id, str(checkpoint_file), BEST_CHECKPOINT)
    c.log_batch(run_id, tags=[RunTag(BEST_PREFIX + k, repr(float(v))) for k, v in metrics.items()])


def download_best_checkpoint(c: MlflowClient, run_id: str, folder: Path) -> Path:
    return Path(c.download_artifacts(run_id, f"{BEST_CHECKPOINT}/checkpoint.pt", str(folder)))


def find_version(c: MlflowClient, model_name: str, source: str):
    """The model version registered from `source` before, if any (promotion is idempotent); a model not
    registered yet has none (the search answers [])."""
    found = read_or_none(f"the versions of model {model_name!r}", lambda: c.search_model_versions(
        f"name = '{model_name}' and tags.`{SOURCE_TAG}` = '{source}'"))
    return found[0] if found else None


def registered_model(c: MlflowClient, model_name: str):
    """The registered model (with its .aliases), or None if there is none; TrackingUnavailable if the store
    could not say."""
    return read_or_none(f"registered model {model_name!r}", lambda: c.get_registered_model(model_name))


def registered_model_names(c: MlflowClient, limit: int) -> list[str]:
    return [m.name for m in c.search_registered_models(max_results=limit)]


class ModelNotFound(LookupError):
    """MLflow has no model at that URI (no such version, run or artifact); the message is MLflow's reason."""


def model_info(uri: str, source: str):
    """mlflow.models.get_model_info of a models:/ or runs:/ URI (or any URI MLflow opens) on store `uri`.
    ModelNotFound if there is no such model, version, run or MLmodel file; TrackingUnavailable if the store
    could not say."""
    import mlflow
    from mlflow.models import Model

    # MLflow's own (get_model_info, Model.load, pytorch.load_model) download into a new temp folder they never
    # remove: with a tracking server every `ganpipe sample` of a registered model left its MLmodel twice and the
    # whole model once in /tmp (measured). So both readers here download into a folder they remove.
    with fluent_tracking_uri(uri), tempfile.TemporaryDirectory(prefix="ganpipe-model-") as tmp:
        try:
            mlmodel = f"{_logged_model_artifacts(source).rstrip('/')}/MLmodel"  # only the MLmodel, not the weights
            return Model.load(mlflow.artifacts.download_artifacts(artifact_uri=mlmodel, dst_path=tmp)).get_model_info()
        except (MlflowException, OSError) as err:  # OSError: requests' own, from an artifact store over HTTP
            if not absent(err):
                raise TrackingUnavailable(f"could not read model {source}: {describe(err)}") from err
            why = str(err).splitlines()[0]
        # MLflow answers an MLmodel it could not download (a 5xx, 401, a dropped connection) as absent too: the
        # listing says which (it raises what went wrong; a missing run or version is absent again)
        listed = read_or_none(f"model {source}", lambda: mlflow.artifacts.list_artifacts(artifact_uri=source)) or []
    if any(Path(f.path).name == "MLmodel" for f in listed):
        raise TrackingUnavailable(f"could not read model {source}: its MLmodel is listed, but MLflow could not "
                                  f"download it ({why})")
    raise ModelNotFound(why)


def load_model(uri: str | None, source: str):
    """(the model, its MLmodel metadata and signature's input shape) of a model URI."""
    import mlflow
    from mlflow.models import Model

    with fluent_tracking_uri(uri), tempfile.TemporaryDirectory(prefix="ganpipe-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=_logged_model_artifacts(source), dst_path=tmp)
        info = Model.load(local).get_model_info()
        return mlflow.pytorch.load_model(local), dict(info.metadata or {}), info.signature.inputs.inputs[0].shape


def _logged_model_artifacts(source: str) -> str:
    """A logged model's URI (models:/<model id>) as the URI of its artifacts, as Model.load resolves it: the
    download functions read models:/X as a registered model's name. Any other URI as it is."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    return ModelsArtifactRepository.get_underlying_uri(source) if ModelsArtifactRepository._is_logged_model_uri(
        source) else source


def version_by_alias(c: MlflowClient, model_name: str, alias: str):
    """The version `alias` points to, or None if the model or the alias does not exist; TrackingUnavailable
    if the store could not say (a 5xx, 401/403, a timeout: never taken for "no champion yet").

    Read through the registered model's aliases: MLflow answers a missing alias of an existing model with
    INVALID_PARAMETER_VALUE, the code of a malformed request too, so that code cannot mean "absent"."""
    model = registered_model(c, model_name)
    if model is None or alias not in model.aliases:
        return None
    version = model.aliases[alias]
    return read_or_none(f"version {version} of model {model_name!r}", lambda: c.get_model_version(model_name, version))


def register_generator(uri: str, run_id: str, model_name: str, model, example, metadata: dict, tags: dict[str, str]):
    """Log a model in the mlflow.pytorch flavour and register it.

    `model` takes one float32 tensor like `example` (batch first, any batch size): z for a generator,
    [z | class weights] for a conditional one, images for a translator (see Trainer.export); `metadata` (the
    model's MLmodel metadata) says which and with what sizes. It is plain torch (a torch.fx GraphModule of
    torch layers: ganpipe.train.export.plain_torch), saved in the "pickle" format with the standard pickle
    module: mlflow.pytorch.load_model returns an ordinary nn.Module (.eval(), .to(), .parameters()) in any
    process with torch, ganpipe not needed; a model whose pickle would import ganpipe is refused here.
    (Versions registered before were "pt2": torch.export's loaded module refuses .eval() and .train().)
    """
    import pickle

    import mlflow
    import torch
    from mlflow.models import infer_signature

    _refuse_ganpipe_imports(pickle.dumps(model), model_name)
    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    c = MlflowClient(uri) if uri else MlflowClient()
    before = c.get_run(run_id).info  # start_run reopens the trial's run and ends it now: its end is put back below
    try:
        with fluent_tracking_uri(uri), mlflow.start_run(run_id=run_id), _without_pickle_warning():
            info = mlflow.pytorch.log_model(
                model, name="generator", signature=signature, input_example=example.numpy(), metadata=metadata,
                serialization_format="pickle", pickle_module=pickle,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            source = tags.get(SOURCE_TAG, "")
            version = create_once(lambda: mlflow.register_model(info.model_uri, model_name, tags=tags),
                                  find=lambda: find_version(c, model_name, source) if source else None)
            return one_version(c, model_name, version, source)
    finally:  # a run's end time is its trial's end, not the promotion's
        if before.status == "RUNNING":
            c.update_run(run_id, status="RUNNING")
        else:
            c.set_terminated(run_id, status=before.status, end_time=before.end_time)


def one_version(c: MlflowClient, model_name: str, version, source: str):
    """The first version registered from `source`, any later ones deleted. MLflow's HTTP client before 3.18
    sent a create again when its answer was lost (a gateway's 504 after the server created the version, a
    dropped connection), and a create sent again after a lookup (resend.create_once) can still cross a slow
    first one, so one registration can leave two versions of the same checkpoint."""
    if not source:
        return version
    same = c.search_model_versions(f"name = '{model_name}' and tags.`{SOURCE_TAG}` = '{source}'")
    first = min(same, key=lambda v: int(v.version), default=version)
    for v in same:
        if v.version != first.version:
            c.delete_model_version(model_name, v.version)
    return first


def _refuse_ganpipe_imports(data: bytes, model_name: str) -> None:
    """ValueError if unpickling `data` would import anything from ganpipe (it is unpickled here, as a check)."""
    import io
    import pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if module.split(".")[0] == "ganpipe":
                raise ValueError(f"model {model_name!r} would need ganpipe to load ({module}.{name}); "
                                 "register a plain-torch module (ganpipe.train.export.plain_torch)")
            return super().find_class(module, name)

    Unpickler(io.BytesIO(data)).load()


@contextmanager
def _without_pickle_warning():
    """mlflow.pytorch warns at every pickle-format save that unpickling runs code; the choice is made
    (register_generator, README "Using a promoted generator"), so a promotion's output does not repeat it."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle" not in record.getMessage()

    logger = logging.getLogger("mlflow.pytorch")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextmanager
def fluent_tracking_uri(uri: str | None):
    """mlflow's fluent API pointed at `uri` for a block, then put back. mlflow.set_tracking_uri also
    sets $MLFLOW_TRACKING_URI, which every later subprocess (a sweep, a Ray worker) would inherit."""
    import mlflow

    if not uri:
        yield
        return
    env, before = os.environ.get(TRACKING_URI_ENV), mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = env


def set_alias(c: MlflowClient, model_name: str, alias: str, version: str) -> None:
    c.set_registered_model_alias(model_name, alias, version)
