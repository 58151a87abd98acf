"""The sweep's plan in words (`sweep --dry-run`, the parent run's search_space.txt) and the step budget
the scheduler works with."""
from __future__ import annotations

from dataclasses import asdict

import yaml

from ganpipe.config import describe
from ganpipe.config.schema import SweepConfig, keys_with
from ganpipe.objective import describe as describe_objective


OPTUNA_STARTUP_TRIALS = 10  # TPESampler's and GPSampler's own n_startup_trials (search.startup_trials: 0)


def max_steps(sweep: SweepConfig) -> int:
    for p in sweep.space:
        if p.path == "train.steps":
            return int(max(p.choices) if p.kind == "choice" else p.high)
    return sweep.trial.train.steps


def grace_period(sweep: SweepConfig) -> int:
    return sweep.search.scheduler.grace_period or sweep.trial.eval.every


OFF_AT_ZERO = ("model.ema_decay", "loss.r1_weight", "train.grad_clip")  # 0 = no EMA, no R1, no clipping


def read_by_trials(sweep: SweepConfig) -> tuple[dict, list[str]]:
    """(the trial config as a nested dict without the keys no trial of the sweep reads, those keys' notes).
    Unread: a key used only when another key has a value none of the trials gives it (the schema's
    `only_when`: loss.gp_weight without wgan-gp, the CycleGAN weights without a translation dataset, the Adam
    betas without adam), and the switches that are off (OFF_AT_ZERO at 0). Searched keys are left out too:
    the search space lists them, and their schema defaults are no trial's values."""
    config = asdict(sweep.trial)
    searched = {p.path: p for p in sweep.space}

    def value(key: str):
        node = config
        for part in key.split("."):
            node = node[part]
        return node

    def drop(key: str) -> None:
        section, _, leaf = key.rpartition(".")
        value(section).pop(leaf, None)

    for key in searched:
        if key.split(".")[0] in config:
            drop(key)
    unread = []
    for key, (decider, allowed) in keys_with("only_when").items():
        if key in searched or key.split(".")[0] not in config:
            continue
        p = searched.get(decider)
        if p is not None and p.kind != "choice":
            continue  # a searched range: some trial may give the decider an allowed value
        values = [value(decider)] if p is None else p.choices
        if not any(v in allowed for v in values):
            drop(key)
            unread.append(f"{key} (only with {decider} {' or '.join(map(str, allowed))})")
    for key in OFF_AT_ZERO:
        if key not in searched and value(key) == 0:
            drop(key)
            unread.append(f"{key} (0: off)")
    return {k: v for k, v in config.items() if v}, unread


def describe_plan(sweep: SweepConfig) -> str:
    s = sweep.search
    sched = s.scheduler
    config, unread = read_by_trials(sweep)
    lines = [
        f"sweep {sweep.name}: {sweep.description}".rstrip(": "),
        "",
        "resolved config: the fixed values the trials read (searched keys: see the search space)",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        *(["not read by any trial: " + "".join(f"\n  {u}" for u in unread)] if unread else []),
        "",
        "search space:",
        describe(sweep.space) if sweep.space else "  (none: every trial trains the same config)",
        "",
        f"search: {s.sampler} sampler (seed {s.seed}), objectives {', '.join(s.objectives)}"
        + f", {s.num_samples} trials, at most {s.max_concurrent} at once",
        f"best: {describe_objective(s.objectives)}; it picks each trial's best checkpoint, ranks the trials and "
        "the promotion candidates",
        "scheduler: " + (
            f"ASHA on each trial's {'best' if sched.compare == 'best' else 'last'} objective, "
            f"grace {grace_period(sweep)} steps, "
            f"reduction factor {sched.reduction_factor}, "
            f"max {max_steps(sweep)} steps" if sched.name == "asha" else "none (every trial trains its full budget)"
        ) + (f"; the first {s.startup_trials or OPTUNA_STARTUP_TRIALS} trials (the random start-up) stop at "
             f"{s.startup_steps} steps" if s.startup_steps else ""),
        f"resources per trial: cpu {sweep.resources.cpu}, gpu {sweep.resources.gpu}"
        + ("; idle CPUs shared once no trial is left to start (in-process Ray)"
           if sweep.resources.share_idle_cpus else ""),
        f"trial budget: {s.num_samples} trials x up to {max_steps(sweep)} G steps = "
        f"{s.num_samples * max_steps(sweep)} G steps",
        f"failures: up to {sweep.failure.max_failures} retries per trial; keep "
        + (f"the best {sweep.failure.keep_checkpoints} checkpoints per trial by the objective"
           if sweep.failure.keep_checkpoints else "every checkpoint"),
    ]
    return "\n".join(lines)
