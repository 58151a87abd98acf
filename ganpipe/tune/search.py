"""The Tuner of a sweep: Optuna's define-by-run searcher, the ASHA scheduler, the trainable with its
resources, checkpoints, callbacks and what it prints while it runs (ganpipe.tune.live, Tune's table at the end)."""
from __future__ import annotations

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ganpipe.config import suggest
from ganpipe.config.schema import SweepConfig, TrialConfig
from ganpipe.config.space import Param
from ganpipe.tune.callbacks import CloseChildRuns, NoTensorBoardFiles, UploadStudy
from ganpipe.tune.live import SweepProgress
from ganpipe.objective import BEST_OBJECTIVE, DIRECTIONS, OBJECTIVE
from ganpipe.tune.plan import OPTUNA_STARTUP_TRIALS, grace_period, max_steps
from ganpipe.tune.storage import Location, StudyStorage
from ganpipe.tune.sweep_run import SweepRun
from ganpipe.tune.threads import ShareIdleCpus
from ganpipe.tune.trainable import train_trial


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study only each trial's end (the name is kept: resumed sweeps unpickle it).

    OptunaSearch writes every result to the study as an intermediate value, for Optuna's pruners. ganpipe
    stops trials with ASHA and keeps the curves in MLflow, so nothing reads them, and the write cost the
    driver 16 ms of CPU per result in the sqlite study, half its time at scale (docs/benchmarks.md, tracking
    at scale). Not writing them also spares a resumed sweep the trials the study already holds COMPLETE
    while Tune's older snapshot thinks them running: a report to one raised and ended the sweep.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass


class DefineByRun:
    """The Optuna define-by-run space (a class, not a lambda: the searcher is pickled on save)."""

    def __init__(self, space: list[Param], base: TrialConfig):
        self.space, self.base = space, base

    def __call__(self, trial):
        suggest(trial, self.space, self.base)
        return None


def make_sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    seed = sweep.search.seed
    if sweep.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep.search.sampler == "cmaes":
        # categorical and conditional params fall back to independent sampling
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    startup = {"n_startup_trials": sweep.search.startup_trials or OPTUNA_STARTUP_TRIALS}
    if sweep.search.sampler == "gp":
        # parameters outside the space every trial shares (conditional ones) are sampled independently
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False, **startup)
    if sweep.search.sampler == "tpe-group":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, **startup)
    return optuna.samplers.TPESampler(seed=seed, **startup)


def make_searcher(sweep: SweepConfig, exp_dir: Location) -> ConcurrencyLimiter:
    # the study learns each trial's best evaluation under the sweep's rule (ganpipe.objective), the one a
    # promotion would take, not whatever its last evaluation happened to be
    objectives = sweep.search.objectives
    metrics = [f"best_{o}" for o in objectives]
    modes = [DIRECTIONS[o] for o in objectives]
    metric, mode = (metrics[0], modes[0]) if len(objectives) == 1 else (metrics, modes)
    searcher = ResumableOptunaSearch(
        space=DefineByRun(sweep.space, sweep.trial),
        metric=metric,
        mode=mode,
        sampler=make_sampler(sweep),
        study_name=exp_dir.name,
        storage=StudyStorage(exp_dir.uri),  # next to local results, on the driver's disk with S3
    )
    return ConcurrencyLimiter(searcher, max_concurrent=sweep.search.max_concurrent)


def trial_number(trial) -> int | None:
    """The trial's number in creation order, from 1: Tune's SearchGenerator tags each trial
    "<number>_<values>" and restores its counter on --resume; None for a tag of another form."""
    head = trial.experiment_tag.split("_", 1)[0]
    return int(head) if head.isdigit() else None


class ShortStartup:
    """Stops the first `startup_trials` trials Tune creates (trial_number), the sampler's random start-up, at
    their first result from `startup_steps` G steps on; the searcher then tells the study their best there.
    Optuna samples at random until that many trials have completed, so with several trials at once a trial or
    two more are random draws too; they run as any trial. Under ASHA alone the first trials at a rung always
    continue (no results recorded there to cut against), so a start-up would cost full-length trials."""

    def __init__(self, *args, startup_trials: int, startup_steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.startup_trials, self.startup_steps = startup_trials, startup_steps

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # ASHA records the rung first
        number = trial_number(trial)
        in_startup = number is not None and number <= self.startup_trials
        if action == TrialScheduler.CONTINUE and in_startup and result.get("step", 0) >= self.startup_steps:
            return TrialScheduler.STOP
        return action


class AshaShortStartup(ShortStartup, ASHAScheduler):
    pass


class FifoShortStartup(ShortStartup, FIFOScheduler):
    pass


def make_scheduler(sweep: SweepConfig):
    sched, search = sweep.search.scheduler, sweep.search
    short = {"startup_trials": search.startup_trials or OPTUNA_STARTUP_TRIALS,
             "startup_steps": search.startup_steps} if search.startup_steps else {}
    if sched.name == "none":
        return FifoShortStartup(**short) if short else FIFOScheduler()
    return (AshaShortStartup if short else ASHAScheduler)(
        time_attr="step", metric=BEST_OBJECTIVE if sched.compare == "best" else OBJECTIVE, mode="min",
        max_t=max_steps(sweep), grace_period=min(grace_period(sweep), max_steps(sweep)),
        reduction_factor=sched.reduction_factor, **short,
    )


def make_trainable(sweep: SweepConfig, run: SweepRun, experiment: str):
    trainable = tune.with_parameters(train_trial, sweep=sweep, tracking=run, experiment=experiment)
    return tune.with_resources(trainable, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})


class ResultsReporter(tune.CLIReporter):
    """Tune's table, whose "Result logdir" line names the sweep's results folder (the storage path). Ray prints
    each trial's `local_experiment_path`, which since Ray's storage rework (2.7) is the driver's staging folder
    in the Ray session (/tmp/ray/session_*/artifacts/...), whatever RunConfig.storage_path says."""

    def __init__(self, results: str, **kwargs):
        super().__init__(**kwargs)
        self.results = results

    def _progress_str(self, *args, **kwargs) -> str:
        lines = super()._progress_str(*args, **kwargs).split("\n")
        return "\n".join(f"Result logdir: {self.results}" if line.startswith("Result logdir: ") else line
                         for line in lines)


def stopper_name(sweep: SweepConfig) -> str:
    """What stops trials early, as the live view says it ("stopped by ..."); "" when nothing does."""
    stoppers = (["ASHA"] if sweep.search.scheduler.name == "asha" else []) + (
        ["the short start-up"] if sweep.search.startup_steps else [])
    return " or ".join(stoppers)


def progress_reporter(sweep: SweepConfig, results: str = "") -> SweepProgress:
    """The live view or event lines while the sweep runs, then this table once (ganpipe.tune.live)."""
    metrics = {"step": "step", BEST_OBJECTIVE: "best objective", **{o: o for o in sweep.search.objectives},
               "modes": "modes"}
    table = ResultsReporter(
        results,
        metric=BEST_OBJECTIVE, mode="min",  # the Tuner has no metric of its own (ASHA and the searcher have theirs)
        metric_columns=metrics,
        # conditional params are absent from some trials' configs, which the table cannot show
        parameter_columns=[p.path for p in sweep.space if not p.when][:8],
        print_intermediate_tables=True,  # its one table, at the end, lists every trial
        sort_by_metric=True,
    )
    return SweepProgress(table, sweep.name, sweep.search.objectives, sweep.search.num_samples, max_steps(sweep),
                         scheduler=stopper_name(sweep),
                         max_failures=sweep.failure.max_failures)


def callbacks(sweep: SweepConfig, exp_dir: Location, run: SweepRun, local_ray: bool) -> list[tune.Callback]:
    found = [CloseChildRuns(sweep, run), NoTensorBoardFiles()]
    if sweep.resources.share_idle_cpus and local_ray:  # a cluster's CPUs may belong to other jobs too
        found.append(ShareIdleCpus(exp_dir.name, sweep.search.num_samples, sweep.resources.cpu))
    if exp_dir.remote:
        found.append(UploadStudy(exp_dir.uri))
    return found


def checkpoint_config(keep: int) -> tune.CheckpointConfig:
    """keep > 0: Tune keeps each trial's best `keep` checkpoints by the objective (and always its latest).
    keep == 0: every checkpoint, in the order reported, with no score: Tune would otherwise re-score every
    kept checkpoint (flattening its whole result) on each new one, O(reports) of driver time per result
    (2.7 ms per result under cProfile at 100 reports per trial, docs/benchmarks.md section 8b); nothing needs the order, since
    attach_best_checkpoints picks the best itself."""
    if not keep:
        return tune.CheckpointConfig(num_to_keep=None)
    return tune.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=OBJECTIVE,  # the sweep's own rule
                                 checkpoint_score_order="min")


def build_tuner(sweep: SweepConfig, exp_dir: Location, run: SweepRun, local_ray: bool) -> tune.Tuner:
    return tune.Tuner(
        make_trainable(sweep, run, exp_dir.name),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(sweep, exp_dir),
            scheduler=make_scheduler(sweep),
            num_samples=sweep.search.num_samples,
            # metric and mode are the scheduler's own (the objective); the searcher has its objectives
            # and the checkpoints their score (the objective), so Tune gets none here
            # a finished trial's worker process takes the next trial: no new process, no re-import of
            # torch and MLflow, real statistics already cached (docs/benchmarks.md, core utilisation)
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=exp_dir.name,
            storage_path=exp_dir.parent.uri,
            failure_config=tune.FailureConfig(max_failures=sweep.failure.max_failures),
            checkpoint_config=checkpoint_config(sweep.failure.keep_checkpoints),
            callbacks=callbacks(sweep, exp_dir, run, local_ray),
            progress_reporter=progress_reporter(sweep, str(exp_dir)),
            verbose=1,  # Tune calls the reporter and prints nothing of its own (its result lines start at 2)
        ),
    )
