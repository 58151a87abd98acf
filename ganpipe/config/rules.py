"""Rules across keys, for every value the sweep may pick: pure (no disk; what a dataset read from
files holds is asked of `labelled`, which ganpipe.preflight supplies).

    check_conditional   model.conditional needs labelled data and an architecture with a conditional variant
    check_translation   translation datasets (CycleGAN) need resnet or dcgan
    check_only_when     a fixed value no trial will use (gp_weight without wgan-gp) is a mistake
    check_search        ASHA's grace period and short start-up trials fit the steps; cmaes has one objective
    check_objectives    what is optimised and gated is what every trial's evaluation reports
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import ganpipe.config.schema as schema
from ganpipe.config.errors import ConfigError
from ganpipe.config.space import Param, apply, first_values, get_path
from ganpipe.config.validate import Validator
from ganpipe.config.values import PRIMARY

# (dataset read from files, its DataConfig) -> whether it has class labels; None = cannot tell (the file
# checks say what is wrong with the files)
Labelled = Callable[[str, schema.DataConfig], "bool | None"]


@dataclass(frozen=True)
class FileChecks:
    """What loading a sweep asks of the disk, handed in from above config (ganpipe.preflight builds one):
    config imports nothing above itself, so it cannot reach the data or the feature networks."""
    files: Callable[[Validator, schema.TrialConfig, list[Param]], None]  # data.root, eval.features, weights
    labelled: Labelled  # for model.conditional


def candidates(v: Validator, key: str, trial: schema.TrialConfig, by_path: dict[str, Param]) -> list | None:
    """Every value `key` can take: its fixed value, or a choice's values (plus its fallback)."""
    p = by_path.get(key)
    if p is None:
        return [get_path(trial, key)]
    if p.kind != "choice":
        v.problem(key, f"search it with choice: [...]; {p.kind}: would sample values that may not fit the data")
        return None
    values = list(p.choices or [])
    if p.when:
        values.append(p.default if p.default is not None else get_path(trial, key))
    return list(dict.fromkeys(values))


# ---- class-conditional GANs: labelled images, an architecture with a conditional variant ------
def check_conditional(v: Validator, trial: schema.TrialConfig, space: list[Param],
                      labelled: Labelled | None = None) -> None:
    """model.conditional: true needs labelled data and dcgan/resnet, for every value the sweep may pick.
    `labelled` answers for datasets read from files; without it they are not judged here."""
    if any(p.key.startswith(("model.", "data.", "eval.features")) for p in v.problems):
        return
    by_path = {p.path: p for p in space}
    cond = by_path.get("model.conditional")
    values = candidates(v, "model.conditional", trial, by_path)
    if not values or True not in values:
        return
    archs_ok = schema.CONDITIONAL_ARCHITECTURES

    def problem(msg: str) -> None:
        v.problem("model.conditional", msg, related=("model.architecture", "data.dataset", "data.root", "eval.features"))

    archs = candidates(v, "model.architecture", trial, by_path) or []
    if cond is not None and "model.architecture" in cond.when:
        archs = [a for a in archs if a in cond.when["model.architecture"]]
    bad = [a for a in archs if a not in archs_ok]
    if bad:
        may = "may be" if len(archs) > 1 else "is"
        problem(f"true needs architecture {' or '.join(archs_ok)} (class-conditional G, "
                f"projection D); model.architecture {may} {bad[0]}"
                + (": search it with when: {model.architecture: [dcgan, resnet]}" if may == "may be" else ""))
    if any(f and f.lower() in schema.INCEPTION_NAMES for f in candidates(v, "eval.features", trial, by_path) or []):
        problem("true needs a classifier of the data's classes for its class metrics; "
                "eval.features inception has none: leave eval.features to the dataset's classifier")
    for name in candidates(v, "data.dataset", trial, by_path) or []:
        if name in schema.FILE_DATASETS:
            has_labels = labelled(name, trial.data) if labelled is not None else None
            if has_labels is None:
                continue
            what = f"{trial.data.root} has no class sub-folders"
        else:
            has_labels, what = name in schema.LABELLED_BUILTIN, f"{name} has no class labels to condition on"
        if not has_labels:
            problem(f"true needs labelled data (digits, mnist, fashion-mnist, cifar10, or an "
                    f"image-folder with one sub-folder per class); {what}")


def check_translation(v: Validator, trial: schema.TrialConfig, space: list[Param]) -> None:
    """Translation datasets (CycleGAN) train image-to-image networks: resnet or dcgan, unconditional."""
    if any(p.key.startswith(("model.", "data.")) for p in v.problems):
        return
    by_path = {p.path: p for p in space}
    tasks = [d for d in candidates(v, "data.dataset", trial, by_path) or [] if d in schema.TRANSLATION_DATASETS]
    if not tasks:
        return
    archs = schema.TRANSLATION_ARCHITECTURES
    for arch in candidates(v, "model.architecture", trial, by_path) or []:
        if arch not in archs:
            v.problem("model.architecture", f"data.dataset {tasks[0]} trains image-to-image networks: "
                                            f"{' or '.join(archs)}, got {arch}", related=("data.dataset",))


# ---- values no trial uses -------------------------------------------------------------------
def given(raw: dict, path: str) -> bool:
    """Whether the sweep mapping (after --set) names `path` itself, not leaving it at its default."""
    section, _, name = path.partition(".")
    node = raw.get(section)
    if isinstance(node, str) and section in PRIMARY:  # `loss: hinge` names only the loss
        return name == PRIMARY[section]
    return isinstance(node, dict) and name in node


def check_only_when(v: Validator, raw: dict, trial: schema.TrialConfig, space: list[Param],
                    single_trial: bool = False) -> None:
    """A fixed value given for a key that no trial will use (gp_weight without wgan-gp, betas without adam)
    is almost always a mistake, most of all one typed on the command line: say so. `single_trial`: the one
    trial of `ganpipe trial`, whose searched keys take their first values. Which keys: the schema fields
    with `only_when` metadata.
    A distribution whose `when` never holds is a conditional parameter under a fixed parent: fine. So is a
    file's value made unused by a --set of the key deciding it (`--set loss=hinge` on a wgan-gp sweep)."""
    by_path = {p.path: p for p in space}
    first = None
    if single_trial:
        try:
            first = apply(trial, first_values(space, trial), space)
        except (ValueError, KeyError, ConfigError):
            return  # a broken space: its problems are reported already
    for key, (decider, allowed) in schema.keys_with("only_when").items():
        if key in by_path or not given(raw, key) or any(p.key in (key, decider) for p in v.problems):
            continue
        if v.set_by(decider) and not v.set_by(key):
            continue
        values = [get_path(first, decider)] if first is not None else candidates(v, decider, trial, by_path)
        if values is None or any(x in allowed for x in values):
            continue  # None: a non-choice distribution, just reported by candidates
        if len(values) > 1:
            state = f"can only be {', '.join(map(str, values))}"
        else:
            state = f"is {values[0]}" + (" (its first value)" if first is not None and decider in by_path else "")
        fix = (f"add --set {decider}={allowed[0]}, or leave {key} out" if v.set_by(key)
               else f"leave {key} out")
        v.problem(key, f"has no effect: it is used only when {decider} is {' or '.join(allowed)}, and {decider} "
                       f"{state}: {fix}", related=(decider,))


# ---- the search section against the trial ---------------------------------------------------
def check_search(v: Validator, search: schema.SearchConfig, trial: schema.TrialConfig, space: list[Param]) -> None:
    """ASHA's grace period fits in train.steps; cmaes optimises one objective; short start-up trials need a
    sampler with a start-up and fewer steps than a trial."""
    _grace_period(v, search, trial, space)
    _startup_steps(v, search, trial, space)
    if search.sampler == "cmaes" and len(search.objectives) > 1:
        v.problem("search.sampler", f"cmaes optimises one objective; with objectives {search.objectives} use tpe "
                                    "or random, or set one objective", related=("search.objectives",))


def _datasets(trial: schema.TrialConfig, space: list[Param]) -> list[str]:
    """Every dataset a trial of the sweep can train on."""
    searched = next((p for p in space if p.path == "data.dataset"), None)
    return list(searched.choices) if searched is not None and searched.kind == "choice" else [trial.data.dataset]


def check_objectives(v: Validator, search, promote, trial: schema.TrialConfig, space: list[Param]) -> None:
    """Only what every trial's evaluation reports can be optimised or gated on, and only what can judge it:
    mode_tv on the 2-D mixtures, kid on images (features, not raw coordinates)."""
    if not isinstance(search, schema.SearchConfig) or not isinstance(promote, schema.PromoteConfig):
        return  # malformed sections: reported already
    datasets = _datasets(trial, space)
    others = [d for d in datasets if d not in schema.POINT_DATASETS]
    if "mode_tv" in search.objectives and others:
        v.problem("search.objectives", f"mode_tv is reported on {' and '.join(schema.POINT_DATASETS)} only, not on "
                                       f"{', '.join(others)}: use [fid] or [kid]", related=("data.dataset",))
    if promote.max_mode_tv < 1 and others:
        v.problem("promote.max_mode_tv", f"gates on mode_tv, reported on {' and '.join(schema.POINT_DATASETS)} only, "
                                         f"not on {', '.join(others)}: leave it out", related=("data.dataset",))
    points = [d for d in datasets if d in schema.POINT_DATASETS]
    if "kid" in search.objectives and points:  # a cubic kernel on 1,000 2-D points is mostly noise (docs/metrics.md)
        v.problem("search.objectives", f"kid on the raw 2-D coordinates of {', '.join(points)} cannot tell a blob "
                                       "from the mixture: use [mode_tv]", related=("data.dataset",))


STARTUP_SAMPLERS = ("tpe", "tpe-group", "gp")  # those with random start-up trials (search.startup_trials)


def _startup_steps(v: Validator, search: schema.SearchConfig, trial: schema.TrialConfig, space: list[Param]) -> None:
    if not search.startup_steps:
        return
    if search.sampler not in STARTUP_SAMPLERS:
        v.problem("search.startup_steps", f"is for samplers with random start-up trials "
                                          f"({', '.join(STARTUP_SAMPLERS)}); ganpipe gives {search.sampler} none: "
                                          "leave it out", related=("search.sampler",))
    fewest, what = _fewest_steps(trial, space)
    if search.startup_steps >= fewest:
        v.problem("search.startup_steps", f"must be < {what}, got {search.startup_steps}")


def _fewest_steps(trial: schema.TrialConfig, space: list[Param]) -> tuple[int, str]:
    """The shortest trial the sweep can run, and how to name it in an error."""
    steps = next((p for p in space if p.path == "train.steps"), None)
    if steps is None:
        return trial.train.steps, f"train.steps ({trial.train.steps})"
    fewest = min(steps.choices) if steps.kind == "choice" else steps.low  # searched: the shortest it can sample
    if steps.when:  # (or fall back to)
        fewest = min(fewest, steps.default if steps.default is not None else trial.train.steps)
    return fewest, f"the fewest train.steps the search can pick ({fewest})"


def _grace_period(v: Validator, search: schema.SearchConfig, trial: schema.TrialConfig, space: list[Param]) -> None:
    """ASHA cannot stop a trial before its grace period: it must fit in train.steps."""
    if search.scheduler.name != "asha" or search.scheduler.grace_period == 0:  # 0: one evaluation interval
        return
    fewest, what = _fewest_steps(trial, space)
    if search.scheduler.grace_period > fewest:
        v.problem("search.scheduler.grace_period",
                  f"must be <= {what} when the scheduler is asha, got {search.scheduler.grace_period}")
