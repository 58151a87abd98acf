"""`ganpipe sweep`: Ray Tune + OptunaSearch (+ ASHA) over the sweep's space, tracked in MLflow.

Order matters: the config is validated, the tracking store checked, Ray joined and
the resources checked before the MLflow experiment and parent run are created, so a
bad sweep never leaves a half-started run behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ganpipe import tracking
from ganpipe.config import ConfigError, Problem, describe, first_values, load_sweep, resolve_trial, suggest
from ganpipe.config.schema import SweepConfig, TrialConfig
from ganpipe.config.space import Param
from ganpipe.preflight import check_data
from ganpipe.tune.callbacks import CloseChildRuns, UploadStudy
from ganpipe.tune.interrupt import TuneInterrupt, sigterm_as_ctrl_c
from ganpipe.tune.storage import Location, StudyStorage, check_location, study_path, upload_study
from ganpipe.tune.threads import ShareIdleCpus
from ganpipe.tune.trainable import train_trial

STATE_FILE = "ganpipe-sweep.json"  # parent run id and tracking info, for --resume
OBJECTIVE_MODES = {"fid": "min", "diversity": "max"}


@dataclass
class SweepOptions:
    address: str | None = None  # None: in-process local Ray sized to this machine
    num_samples: int | None = None
    tracking_uri: str | None = None
    storage: str | None = None  # a folder (default ./ray_results) or s3://bucket/prefix
    resume: bool = False
    dry_run: bool = False
    num_cpus: int | None = None  # local Ray only; default all cores
    experiment: str | None = None  # MLflow experiment; default tracking.experiment or the sweep name
    parent_tags: dict = field(default_factory=dict)  # e.g. nesting under a pipeline's stage
    promote: bool = True  # run the promote: section at the end (a pipeline has its own stage)
    overrides: list[str] = field(default_factory=list)  # the --set that built the sweep; --resume keeps them
    resume_hint: bool = True  # print how to resume an interrupted sweep (a pipeline prints its own)


@dataclass
class SweepOutcome:
    exit_code: int  # 0 done, 1 every trial failed, 130 interrupted (resumable)
    done: bool = False
    track: dict = field(default_factory=dict)  # uri, experiment_id, parent_run_id
    exp_dir: Location | None = None


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tolerates what a SIGKILLed driver leaves behind.

    The searcher's state is restored from Tune's last experiment snapshot, while the
    Optuna study (sqlite) already holds what happened after it: a trial the snapshot
    thinks is running may be COMPLETE in the study. Reporting to it again is harmless to
    skip; raising would end the whole resumed sweep.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


class DefineByRun:
    """The Optuna define-by-run space (a class, not a lambda: the searcher is pickled on save)."""

    def __init__(self, space: list[Param], base: TrialConfig):
        self.space, self.base = space, base

    def __call__(self, trial):
        suggest(trial, self.space, self.base)
        return None


# ---- plan -----------------------------------------------------------------------------
def max_steps(sweep: SweepConfig) -> int:
    for p in sweep.space:
        if p.path == "train.steps":
            return int(max(p.choices) if p.kind == "choice" else p.high)
    return sweep.trial.train.steps


def grace_period(sweep: SweepConfig) -> int:
    return sweep.search.scheduler.grace_period or sweep.trial.eval.every


def describe_plan(sweep: SweepConfig) -> str:
    s = sweep.search
    sched = s.scheduler
    lines = [
        f"sweep {sweep.name}: {sweep.description}".rstrip(": "),
        "",
        "resolved config (search entries at their defaults):",
        yaml.safe_dump(asdict(sweep.trial), sort_keys=False).rstrip(),
        "",
        "search space:",
        describe(sweep.space) if sweep.space else "  (none: every trial trains the same config)",
        "",
        f"search: {s.sampler} sampler (seed {s.seed}), objectives "
        + ", ".join(f"{o} ({OBJECTIVE_MODES[o]})" for o in s.objectives)
        + f", {s.num_samples} trials, at most {s.max_concurrent} at once",
        "scheduler: " + (
            f"ASHA on {sched.metric} ({OBJECTIVE_MODES[sched.metric]}), grace {grace_period(sweep)} steps, "
            f"reduction factor {sched.reduction_factor}, "
            f"max {max_steps(sweep)} steps" if sched.name == "asha" else "none (every trial trains its full budget)"
        ),
        f"resources per trial: cpu {sweep.resources.cpu}, gpu {sweep.resources.gpu}"
        + ("; idle CPUs shared once no trial is left to start (in-process Ray)"
           if sweep.resources.share_idle_cpus else ""),
        f"trial budget: {s.num_samples} trials x up to {max_steps(sweep)} G steps = "
        f"{s.num_samples * max_steps(sweep)} G steps",
        f"failures: up to {sweep.failure.max_failures} retries per trial; keep "
        + (f"the best {sweep.failure.keep_checkpoints} checkpoints per trial by fid"
           if sweep.failure.keep_checkpoints else "every checkpoint"),
    ]
    return "\n".join(lines)


# ---- Ray ---------------------------------------------------------------------------------
def connect_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join a cluster or start a small local Ray; True if this process started it."""
    if ray.is_initialized():
        return False
    if address:
        target = resolve_address(address)
        unreachable = _nothing_listening(target)
        if unreachable:
            raise ConfigError([Problem("--address", "address", unreachable)])
        if is_ray_client(target):
            missing = ray_client_missing()
            if missing:
                raise ConfigError([Problem("--address", "address", missing)])
        try:
            if address == "auto" and not os.environ.get("RAY_ADDRESS"):
                # the recorded cluster resolved above; Ray turns token auth on by itself for `auto` when a token
                # exists (never for an explicit address, RAY_ADDRESS included)
                ray.init(address="auto", log_to_driver=True)
            else:
                ray.init(address=target, log_to_driver=True)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ... depending on the form
            hint = ""
            if (address != "auto" or os.environ.get("RAY_ADDRESS")) and os.environ.get("RAY_AUTH_MODE") is None:
                hint = ("; Ray 2.60 clusters use token authentication by default, and a driver given an explicit "
                        "address sends the token only with RAY_AUTH_MODE=token (the token from RAY_AUTH_TOKEN or "
                        "~/.ray/auth_token)")
            raise ConfigError([Problem("--address", "address",
                                       f"cannot join the Ray cluster at {target}: {err}{hint}")])
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        how = f" (--address {address})" if target != address else ""
        print(f"joined the Ray cluster at {target}{how}: {len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs"
              + (", as a Ray Client" if is_ray_client(target) else ""))
        sigterm_as_ctrl_c()  # ray.init put in Ray's own SIGTERM handler, which exits without closing runs
        return True
    ray.init(
        # "local": always a new in-process Ray; without it ray.init() joins a cluster that `ray start`
        # left running on this machine (and then refuses num_cpus)
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        object_store_memory=200 * 1024 * 1024,  # trials exchange checkpoints via storage, not objects
        include_dashboard=False,
        configure_logging=True,
        logging_level="WARNING",
    )
    sigterm_as_ctrl_c()  # ray.init put in Ray's own SIGTERM handler, which exits without closing runs
    return True


def resolve_address(address: str) -> str:
    """--address as Ray will use it. `auto` means $RAY_ADDRESS, else the cluster last started with
    `ray start --head` on this machine (the address Ray records in its temp folder, $RAY_TMPDIR/ray or
    /tmp/ray). Unlike Ray's own `auto`, never any other Ray that happens to run here."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:  # Ray's own record of the last `ray start --head` (a private helper, so guarded)
        from ray._common.utils import get_ray_address_file

        record = Path(get_ray_address_file(None))
    except Exception:
        return address  # let Ray resolve it
    found = record.read_text().strip() if record.is_file() else ""
    if not found:
        raise ConfigError([Problem("--address", "address", "auto: RAY_ADDRESS is not set and no cluster was "
                                   f"started with `ray start --head` on this machine (no {record}); start one, "
                                   "or give HOST:PORT or ray://HOST:10001")])
    return found


def is_ray_client(address: str) -> bool:
    return address.startswith("ray://")


def ray_client_missing() -> str | None:
    """Ray Client (ray://) needs grpcio, which ray[tune] does not install."""
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        return ("ray:// is Ray Client, which needs grpcio (not installed with ray[tune]): "
                f"pip install 'ray[client]=={ray.__version__}', or run the driver on a node of the cluster "
                "with --address auto or HOST:PORT")
    return None


def _nothing_listening(address: str) -> str | None:
    """Why HOST:PORT (or ray://HOST:PORT) cannot be a Ray cluster, found in seconds, not Ray's minutes."""
    import socket

    if address == "auto":
        return None  # Ray finds the local cluster itself and fails fast when there is none
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return f"expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as err:
        return f"nothing answers at {host}:{port} ({err.strerror or err}); is the Ray head running there?"


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


def check_shared_storage(storage: Location, given: bool, client: bool = False) -> None:
    """On a multi-node cluster every node must see the storage (checkpoints move between nodes): a marker
    written by the driver is looked for by a task pinned to each node (for S3 with that node's AWS settings).
    A Ray Client driver is no node at all, so there even one node must see what this machine wrote."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2 and not client:
        return
    if not given:
        raise ConfigError([Problem("--storage", "storage", f"required on a cluster of {len(nodes)} nodes: a folder "
                                   "every node sees at the same path (NFS, a shared volume) or s3://BUCKET/PREFIX")])
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage.mkdir()
    marker = storage / f".ganpipe-shared-{os.getpid()}-{time.time_ns()}"
    marker.write_text("written by the ganpipe driver")
    try:
        @ray.remote(num_cpus=0)
        def sees(uri: str) -> str | None:
            from ganpipe.tune.storage import Location

            try:
                return None if Location(uri).exists() else "not found"
            except Exception as err:  # e.g. no S3 credentials or endpoint on that node
                return " ".join(str(err).split())[:200]

        checks = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(marker.uri)
            for n in nodes}
        blind = [f"{name} ({why})" for name, why in zip(checks, ray.get(list(checks.values()), timeout=120)) if why]
    finally:
        marker.delete()
    if blind:
        hint = ("give every node the same AWS settings (AWS_ENDPOINT_URL, credentials)" if storage.remote
                else "give a folder shared by every node at the same path")
        raise ConfigError([Problem("--storage", "storage", f"{storage} is not visible on node(s) {', '.join(blind)}; "
                                   + hint)])


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


def check_resources(sweep: SweepConfig) -> None:
    """A request no node can ever satisfy would leave trials PENDING forever: refuse it now."""
    cpu, gpu = sweep.resources.cpu, sweep.resources.gpu
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in nodes):
        return
    have = ", ".join(f"cpu {n.get('CPU', 0):g} gpu {n.get('GPU', 0):g}" for n in nodes) or "no nodes"
    raise ConfigError([Problem(sweep.source or "sweep", "resources",
                               f"a trial asks for cpu {cpu:g}, gpu {gpu:g} but no node has that (nodes: {have})")])


# ---- experiment folders ----------------------------------------------------------------
def new_experiment_dir(storage: Location, name: str) -> Location:
    return storage.stamped_folder(name)


def latest_experiment_dir(storage: Location, name: str) -> Location | None:
    candidates = [p for p in storage.stamped(name) if (p / STATE_FILE).exists()]
    return candidates[-1] if candidates else None


def parse_storage(given: str | None) -> Location:
    """--storage checked before anything starts: a folder, or an S3 prefix that can be written."""
    try:
        storage = Location.parse(given)
    except ValueError as err:
        raise ConfigError([Problem("--storage", "storage", str(err))])
    why = check_location(storage)
    if why:
        raise ConfigError([Problem("--storage", "storage", why)])
    return storage


# ---- the search -----------------------------------------------------------------------
def make_sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    seed = sweep.search.seed
    if sweep.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep.search.sampler == "cmaes":
        # categorical and conditional params fall back to independent sampling
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    startup = {"n_startup_trials": sweep.search.startup_trials} if sweep.search.startup_trials else {}
    return optuna.samplers.TPESampler(seed=seed, **startup)


def make_searcher(sweep: SweepConfig, exp_dir: Location) -> ConcurrencyLimiter:
    objectives = sweep.search.objectives
    metric = objectives[0] if len(objectives) == 1 else list(objectives)
    mode = OBJECTIVE_MODES[metric] if isinstance(metric, str) else [OBJECTIVE_MODES[o] for o in metric]
    searcher = ResumableOptunaSearch(
        space=DefineByRun(sweep.space, sweep.trial),
        metric=metric,
        mode=mode,
        sampler=make_sampler(sweep),
        study_name=exp_dir.name,
        storage=StudyStorage(exp_dir.uri),  # next to local results, on the driver's disk with S3
    )
    return ConcurrencyLimiter(searcher, max_concurrent=sweep.search.max_concurrent)


def make_scheduler(sweep: SweepConfig):
    sched = sweep.search.scheduler
    if sched.name == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="step", metric=sched.metric, mode=OBJECTIVE_MODES[sched.metric],
        max_t=max_steps(sweep), grace_period=min(grace_period(sweep), max_steps(sweep)),
        reduction_factor=sched.reduction_factor,
    )


def make_trainable(sweep: SweepConfig, track: dict, experiment: str):
    trainable = tune.with_parameters(train_trial, sweep=sweep, tracking=track, experiment=experiment)
    return tune.with_resources(trainable, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})


def progress_reporter(sweep: SweepConfig) -> tune.CLIReporter:
    metrics = {"step": "step", "fid": "fid", "diversity": "diversity", "modes": "modes"}
    return tune.CLIReporter(
        metric="fid", mode="min",  # the Tuner has no metric of its own (ASHA and the searcher have theirs)
        metric_columns=metrics,
        # conditional params are absent from some trials' configs, which the table cannot show
        parameter_columns=[p.path for p in sweep.space if not p.when][:8],
        max_report_frequency=15,
        sort_by_metric=True,
    )


def callbacks(sweep: SweepConfig, exp_dir: Location, track: dict, local_ray: bool) -> list[tune.Callback]:
    found = [CloseChildRuns(sweep, track["uri"], track["experiment_id"], track["parent_run_id"])]
    if sweep.resources.share_idle_cpus and local_ray:  # a cluster's CPUs may belong to other jobs too
        found.append(ShareIdleCpus(exp_dir.name, sweep.search.num_samples, sweep.resources.cpu))
    if exp_dir.remote:
        found.append(UploadStudy(exp_dir.uri))
    return found


def build_tuner(sweep: SweepConfig, exp_dir: Location, track: dict, local_ray: bool) -> tune.Tuner:
    return tune.Tuner(
        make_trainable(sweep, track, exp_dir.name),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(sweep, exp_dir),
            scheduler=make_scheduler(sweep),
            num_samples=sweep.search.num_samples,
            # metric and mode are the scheduler's own (search.scheduler.metric); the searcher has its
            # objectives and the checkpoints their score (fid), so Tune gets none here
            # a finished trial's worker process takes the next trial: no new process, no re-import of
            # torch and MLflow, real statistics already cached (docs/benchmarks.md, core utilisation)
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=exp_dir.name,
            storage_path=exp_dir.parent.uri,
            failure_config=tune.FailureConfig(max_failures=sweep.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=sweep.failure.keep_checkpoints or None,
                checkpoint_score_attribute="fid",
                checkpoint_score_order="min",
            ),
            callbacks=callbacks(sweep, exp_dir, track, local_ray),
            progress_reporter=progress_reporter(sweep),
            verbose=1,
        ),
    )


# ---- the whole command -------------------------------------------------------------
def run_sweep(sweep: SweepConfig, yaml_text: str, opts: SweepOptions) -> SweepOutcome:
    if opts.num_samples is not None and opts.num_samples < 1:
        raise ConfigError([Problem("--num-samples", "search.num_samples", f"must be >= 1, got {opts.num_samples}")])
    storage = parse_storage(opts.storage)
    exp_dir = None
    if opts.resume:  # first: the checks below must judge the sweep as it was started
        exp_dir = latest_experiment_dir(storage, sweep.name)
        if exp_dir is None or not tune.Tuner.can_restore(exp_dir.uri):
            raise ConfigError([Problem("--resume", "resume", f"no sweep {sweep.name!r} to resume under {storage}")])
        sweep = sweep_as_started(sweep, yaml_text, opts, json.loads((exp_dir / STATE_FILE).read_text()))
    elif opts.num_samples is not None:
        sweep.search.num_samples = opts.num_samples

    # every check that starts nothing runs before --dry-run answers, so a dry run that passes means a run would start
    uri = tracking.resolve_uri(opts.tracking_uri, sweep.tracking.uri)
    why = tracking.check_reachable(uri)
    if why:
        given_by = tracking.uri_source(opts.tracking_uri, sweep.tracking.uri)
        given_by = {"tracking.uri": sweep.source or "sweep", "default": "default tracking store"}.get(given_by, given_by)
        raise ConfigError([Problem(given_by, "tracking.uri", why)])
    if not opts.address and not ray.is_initialized():
        check_local_resources(sweep, opts.num_cpus)
    target = resolve_address(opts.address) if opts.address else None
    check_client_mode(target, uri, opts.storage is not None)
    check_data(resolve_trial(sweep, first_values(sweep.space, sweep.trial)), sweep.source or "sweep", keep=False)
    if not sweep.space and sweep.search.num_samples > 1:  # same config, same train.seed: the same trial N times
        print(f"warning: {sweep.source or 'the sweep'} has no search entries, so its {sweep.search.num_samples} "
              "trials train the same config with the same train.seed; add a search entry (e.g. "
              "--set 'optimizer.lr_g={loguniform: [1e-4, 1e-3]}') or --num-samples 1", file=sys.stderr)
    if opts.dry_run:
        print(describe_plan(sweep))
        return SweepOutcome(0)
    exp_dir = exp_dir or new_experiment_dir(storage, sweep.name)

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table with our metric columns
    started_here = connect_ray(opts.address, opts.num_cpus)
    client = bool(target and is_ray_client(target))
    try:
        check_resources(sweep)
        check_shared_storage(storage, opts.storage is not None, client)
        track = open_sweep_run(sweep, yaml_text, uri, exp_dir, opts)
        print(f"sweep {sweep.name}: results in {exp_dir}, MLflow at {uri} (parent run {track['parent_run_id']})")
        if opts.resume:
            tuner = tune.Tuner.restore(
                exp_dir.uri, trainable=make_trainable(sweep, track, exp_dir.name),
                resume_unfinished=True, resume_errored=False,
            )
        else:
            tuner = build_tuner(sweep, exp_dir, track, local_ray=started_here)
            # S3: the study the searcher just created goes up at once, so whoever unpickles the searcher
            # elsewhere (the head node under ray://, a later --resume on another machine) finds it
            upload_study(exp_dir)
        start = time.perf_counter()
        try:
            with TuneInterrupt(enabled=not client) as interrupt:
                results = tuner.fit()
        except BaseException as err:  # never leave the parent RUNNING on a driver error
            c = tracking.client(uri)
            tracking.close_running_children(c, track["experiment_id"], track["parent_run_id"], "FAILED", repr(err))
            tracking.end_run(c, track["parent_run_id"], "FAILED", f"driver error: {err!r}", "failed")
            raise
        if client and exp_dir.remote:  # the head kept the study; read its final snapshot, not this empty copy
            study_path(exp_dir).unlink(missing_ok=True)
        hint = resume_command(sweep, track, exp_dir, opts) if opts.resume_hint else ""
        ended = finish_sweep(sweep, results, track, exp_dir, time.perf_counter() - start, interrupt.happened, hint)
        if ended == "finished" and opts.promote and sweep.promote.enabled:
            promote_after_sweep(sweep, track)
        return SweepOutcome(EXIT_CODES[ended], ended != "interrupted", track, exp_dir)
    finally:
        if started_here:
            ray.shutdown()


def sweep_as_started(sweep: SweepConfig, yaml_text: str, opts: SweepOptions, state: dict) -> SweepConfig:
    """The sweep a --resume continues: the same file, --set and number of trials as when it started (Tune
    rebuilds the trials from this config, so other values would train the rest of them differently).
    `state` is the sweep's STATE_FILE; sweeps started before it kept these resume with what was given."""
    if "overrides" not in state:
        if opts.num_samples is not None:
            sweep.search.num_samples = opts.num_samples
        return sweep
    started, problems = state["overrides"], []
    if state.get("sweep_sha256") != hashlib.sha256(yaml_text.encode()).hexdigest():
        problems.append(Problem(sweep.source or "sweep", "(file)", "changed since the sweep started; --resume "
                                "continues what was started: restore the file, or start anew without --resume"))
    if opts.overrides and opts.overrides != started:
        problems.append(Problem("--set", "resume", f"--resume keeps the --set the sweep started with "
                                f"({' '.join(started) or 'none'}): give those or none"))
    if opts.num_samples is not None and opts.num_samples != state["num_samples"]:
        problems.append(Problem("--num-samples", "search.num_samples", f"--resume keeps the sweep's "
                                f"{state['num_samples']} trials: give that or none"))
    if problems:
        raise ConfigError(problems)
    sweep = load_sweep(sweep.source, started) if started != opts.overrides else sweep
    sweep.search.num_samples = state["num_samples"]
    return sweep


def resume_command(sweep: SweepConfig, track: dict, exp_dir: Location, opts: SweepOptions) -> str:
    """What the user types to continue: the --set and trials are kept in the sweep's folder; the store,
    storage and cluster must be given again."""
    words = ["ganpipe sweep", sweep.source, "--resume", "--storage", str(exp_dir.parent)]
    if opts.tracking_uri:
        words += ["--tracking-uri", track["uri"]]
    if opts.address:
        words += ["--address", opts.address]
    return " ".join(words)


def open_sweep_run(sweep: SweepConfig, yaml_text: str, uri: str, exp_dir: Location, opts: SweepOptions) -> dict:
    """Create (or, on --resume, reopen) the experiment and the sweep's parent run."""
    from ganpipe.tune.provenance import sweep_tags

    c = tracking.client(uri)
    if opts.resume:
        track = json.loads((exp_dir / STATE_FILE).read_text())
        tracking.reopen(c, track["parent_run_id"])
        return {**track, "uri": uri}
    experiment_id = tracking.ensure_experiment(c, experiment_name(sweep, opts))
    tags = {**sweep_tags(sweep, yaml_text, exp_dir), **opts.parent_tags}
    parent = tracking.start_parent_run(c, experiment_id, exp_dir.name, tags)
    tracking.log_texts(c, parent, {
        "sweep.yaml": yaml_text,
        "resolved_config.yaml": yaml.safe_dump(asdict(sweep.trial), sort_keys=False),
        "search_space.txt": describe_plan(sweep),
        "sweep_config.json": json.dumps(asdict(sweep), indent=2),  # what ran, --set included
    })
    track = {"uri": uri, "experiment_id": experiment_id, "parent_run_id": parent}
    exp_dir.mkdir()
    started = {"overrides": list(opts.overrides), "num_samples": sweep.search.num_samples,
               "sweep_sha256": hashlib.sha256(yaml_text.encode()).hexdigest()}  # what --resume keeps
    (exp_dir / STATE_FILE).write_text(json.dumps({**track, **started}, indent=2))
    return track


def experiment_name(sweep: SweepConfig, opts: SweepOptions) -> str:
    return opts.experiment or sweep.tracking.experiment or sweep.name


EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130}


def sweep_outcome(trials, num_samples: int, interrupted: bool) -> str:
    """One of EXIT_CODES: finished = every trial of the budget ended; failed = moreover every one errored
    (nothing to rank or promote); interrupted = otherwise, or Tune was (it then hands back the trials it
    stopped as TERMINATED, like finished ones)."""
    done = (not interrupted and len(trials) == num_samples
            and all(t.status in ("TERMINATED", "ERROR") for t in trials))
    if not done:
        return "interrupted"
    return "failed" if all(t.status == "ERROR" for t in trials) else "finished"


def finish_sweep(sweep: SweepConfig, results, track: dict, exp_dir: Location, seconds: float,
                 interrupted: bool = False, resume_hint: str = "") -> str:
    """Report, close the runs as the sweep ended; returns sweep_outcome's word for it."""
    from ganpipe.tune.report import log_sweep_report

    trials = results._experiment_analysis.trials
    ended = sweep_outcome(trials, sweep.search.num_samples, interrupted)
    done = ended != "interrupted"
    c = tracking.client(track["uri"])
    retired = retire_unsaved_trials(c, track, trials)
    summary = log_sweep_report(sweep, results, track, exp_dir, done)
    if retired:
        summary += (f"\ndeleted {retired} child run(s) of trials a killed driver had started after Tune last saved "
                    "its state (Tune never resumed them; restorable in MLflow)")
    upload_study(exp_dir)  # S3: the study's final state beside the results (no-op for a folder)
    if ended == "failed":
        why = f"every trial failed ({len(trials)})" + next(
            (f"; Tune's error file of one: {t.error_file}" for t in trials if t.error_file), "")
        tracking.close_running_children(c, track["experiment_id"], track["parent_run_id"], "FAILED", why)
        tracking.end_run(c, track["parent_run_id"], "FAILED", why, "failed")
        summary += f"\n{why}"
    elif done:
        tracking.close_running_children(c, track["experiment_id"], track["parent_run_id"], "KILLED", "sweep ended")
        tracking.end_run(c, track["parent_run_id"], "FINISHED", ganpipe_status="finished")
    else:
        tracking.close_running_children(
            c, track["experiment_id"], track["parent_run_id"], "KILLED", "sweep interrupted; resume with --resume")
        tracking.end_run(c, track["parent_run_id"], "KILLED", "interrupted; resume with --resume", "killed")
    print(summary)
    print(f"\nsweep {ended} in {seconds:.0f} s; Tune results: {exp_dir}")
    print(f"MLflow: {track['uri']} (experiment {track['experiment_id']}, parent run {track['parent_run_id']})")
    print(f"open the UI: ganpipe ui --tracking-uri {track['uri']}")
    if not done and resume_hint:
        print(f"resume: {resume_hint}")
    return ended


def retire_unsaved_trials(c, track: dict, trials) -> int:
    """A driver SIGKILLed between two of Tune's state snapshots leaves child runs of trials that Tune never
    saved: the resumed sweep knows nothing of them (no checkpoint, no result) and its searcher asks anew, while
    their Optuna asks are marked stale. Such a run is ended, tagged why, and deleted (MLflow keeps deleted runs
    restorable: `mlflow runs restore`), so each Tune trial has exactly one child run."""
    known = {t.trial_id for t in trials}
    retired = 0
    for run in tracking.children(c, track["experiment_id"], track["parent_run_id"]):
        trial_id = run.data.tags.get(tracking.TRIAL_TAG)
        if not trial_id or trial_id in known:
            continue
        evals = len(c.get_metric_history(run.info.run_id, "fid"))
        tracking.end_run(c, run.info.run_id, "KILLED", "started by a driver that was killed before Tune saved the "
                         f"trial ({evals} evaluation(s) logged); Tune never resumed it", "killed")
        c.delete_run(run.info.run_id)
        retired += 1
    return retired


def promote_after_sweep(sweep: SweepConfig, track: dict) -> None:
    from ganpipe.promote import PromotionRefused, promote

    print("\npromotion:")
    try:
        decision = promote(track["uri"], sweep.promote, sweep.search.objectives, [track["parent_run_id"]],
                           resources=sweep.resources)
    except PromotionRefused as err:
        print(f"  refused: {err}")
        return
    print(f"  {decision.message}")
    if decision.outcome in ("champion", "challenger"):
        print(f"  load it: mlflow.pytorch.load_model('models:/{decision.model_name}@{decision.outcome}')")
