"""The sweep's plan in words (`sweep --dry-run`, the parent run's search_space.txt) and the step budget
the scheduler works with."""
from __future__ import annotations

from dataclasses import asdict

import yaml

from ganpipe.config import describe
from ganpipe.config.schema import SweepConfig
from ganpipe.objective import describe as describe_objective


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
        f"search: {s.sampler} sampler (seed {s.seed}), objectives {', '.join(s.objectives)}"
        + f", {s.num_samples} trials, at most {s.max_concurrent} at once",
        f"best: {describe_objective(s.objectives)}; it picks each trial's best checkpoint, ranks the trials and "
        "the promotion candidates",
        "scheduler: " + (
            f"ASHA on each trial's {'best' if sched.compare == 'best' else 'last'} objective, "
            f"grace {grace_period(sweep)} steps, "
            f"reduction factor {sched.reduction_factor}, "
            f"max {max_steps(sweep)} steps" if sched.name == "asha" else "none (every trial trains its full budget)"
        ),
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
