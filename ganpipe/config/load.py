"""Sweep YAML -> a validated SweepConfig, with `--set key.path=value` overrides.

    sweep = load_sweep("sweeps/quick.yaml", ["loss=wgan-gp", "optimizer.lr_g=2e-4"])
    sweep.trial   # TrialConfig of the fixed values (searched keys at their dataclass defaults)
    sweep.space   # list[Param], ordered so conditions come after what they refer to

Every problem (file, YAML, override, type, name, range, distribution, condition) is
collected and raised as one ConfigError, before anything starts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import yaml

import ganpipe.config.schema as schema
import ganpipe.config.yamlfile as yamlfile
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.paths import absolute_paths
from ganpipe.config.rules import (
    FileChecks,
    check_conditional,
    check_objectives,
    check_only_when,
    check_search,
    check_translation,
)
from ganpipe.config.schema import NAME_RE, fields_of
from ganpipe.config.space import apply
from ganpipe.config.validate import Validator
from ganpipe.config.values import PRIMARY, SWEEP_CLASSES, TOP_KEYS, TRIAL_CLASSES, primary_noun

# the top level, as field name -> type, so overrides walk it like any section
TOP_FIELDS: dict[str, Any] = {"name": str, "description": str, **TRIAL_CLASSES, **SWEEP_CLASSES}


def _read(file: str, problems: list[Problem]) -> dict | None:
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        problems.append(Problem(file, "(file)", f"cannot read: {e.strerror or e}"))
        return None
    except UnicodeDecodeError as e:
        problems.append(Problem(file, "(file)", f"not a UTF-8 text file (byte {e.start}): a sweep file is YAML text"))
        return None
    try:
        raw = yamlfile.load(text)
    except yaml.YAMLError as e:
        problems.append(Problem(file, "(yaml)", yamlfile.describe(e)))
        return None
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else type(raw).__name__
        problems.append(Problem(file, "(top level)", f"expected a mapping of sweep keys ({', '.join(TOP_KEYS)}), got {got}"))
        return None
    return raw


# ---- --set overrides ----------------------------------------------------------------------
Override = str | tuple[str, str]  # "key.path=value" (typed after --set), or (where it was written, that string)


def _override(node: dict, fields: dict, prefix: str, parts: list[str], value: Any, label: str,
              problems: list[Problem], overridden: dict[str, str]) -> None:
    """Set `parts` (a key path below `prefix`) in the raw mapping `node`, checking keys only.

    Values are validated later with everything else; `overridden` (key -> `label`) makes those problems
    name where the override was written (--set, a pipeline's set list) instead of the file.
    """
    name = parts[0]
    key = prefix + name
    if name not in fields:
        problems.append(Problem(label, key, f"unknown key {name!r}; valid: {', '.join(fields)}"))
        return
    typ = fields[name]
    if not dataclasses.is_dataclass(typ):  # a leaf: a value or a distribution
        if len(parts) > 1:
            problems.append(Problem(label, f"{key}.{parts[1]}", f"{key} is a value, not a section"))
            return
        node[name] = value
        overridden[key] = label
        return
    child = node.get(name)
    if child is None:
        child = {}
    if isinstance(child, str) and key in PRIMARY:  # `loss: hinge` in the file
        child = {PRIMARY[key]: child}
    if not isinstance(child, dict):
        return  # the file's own value is malformed; validation reports it
    node[name] = child
    sub = fields_of(typ)
    if len(parts) > 1:
        _override(child, sub, key + ".", parts[1:], value, label, problems, overridden)
    elif isinstance(value, str) and key in PRIMARY:  # `--set loss=wgan-gp`
        _override(child, sub, key + ".", [PRIMARY[key]], value, label, problems, overridden)
    elif isinstance(value, dict):  # `--set optimizer={name: adam, lr_g: 1e-3}` merges
        for k, v in value.items():
            _override(child, sub, key + ".", [str(k)], v, label, problems, overridden)
    else:
        what = f"a mapping or {primary_noun(key)}" if key in PRIMARY else "a mapping"
        problems.append(Problem(label, key, f"{key} is a section: expected {what}, got {value!r}"))


def apply_overrides(raw: dict, overrides: Iterable[Override], problems: list[Problem]) -> dict[str, str]:
    """Apply `key.path=value` strings (values parsed as YAML) to `raw` in place; returns {key: label}, the
    label "--set" unless an override came as (label, string)."""
    overridden: dict[str, str] = {}
    for item in overrides:
        label, item = item if isinstance(item, tuple) else ("--set", item)
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem(label, item, "expected KEY.PATH=VALUE, e.g. optimizer.lr_g=2e-4"))
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            problems.append(Problem(label, key, f"cannot parse value {text!r}: {getattr(e, 'problem', None) or e}"))
            continue
        _override(raw, TOP_FIELDS, "", key.split("."), value, label, problems, overridden)
    return overridden


# ---- the sweep -----------------------------------------------------------------------
def load_sweep(path, overrides: Iterable[Override] = (), single_trial: bool = False,
               file_checks: FileChecks | None = None) -> schema.SweepConfig:
    """Read, override, validate, make paths absolute. Raises ConfigError listing every problem. `overrides`:
    "key=value" strings, or (label, string) pairs whose problems name `label` (a pipeline's set lists).
    `single_trial`: for `ganpipe trial`, which runs no scheduler, so a short debugging run need not also
    shrink ASHA's grace period. `file_checks`: what to ask of the disk (the data files, the feature
    classifier, the Inception weights), their problems reported with the others; without it nothing is read:
    ganpipe.preflight.load_checked_sweep passes the checks."""
    file = str(path)
    problems: list[Problem] = []
    raw = _read(file, problems)
    overridden = apply_overrides(raw if raw is not None else {}, overrides, problems)
    if raw is None:
        raise ConfigError(problems)

    v = Validator(file, overridden)
    v.problems = problems
    for k in raw:
        if k not in TOP_KEYS:
            v.problem(str(k), f"unknown key {k!r}; valid: {', '.join(TOP_KEYS)}")
    name = raw.get("name")
    if name is None:
        v.problem("name", "required: the sweep's name (it names the MLflow experiment and model)")
    elif not isinstance(name, str) or not NAME_RE.match(name):
        v.problem("name", f"must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit; got {name!r}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        v.problem("description", f"expected a string, got {description!r}")
        description = ""

    trial, space = v.trial(raw, allow_dist=True)
    sections = {k: v.section(cls, raw.get(k), k, False, []) for k, cls in SWEEP_CLASSES.items()}
    space = v.conditions(space, trial)
    absolute_paths(trial, space)  # trials may run in another working directory
    if file_checks is not None:  # data.root and eval.features: files are there and fit, before anything runs
        file_checks.files(v, trial, space)
    check_conditional(v, trial, space, file_checks.labelled if file_checks is not None else None)
    check_translation(v, trial, space)
    check_only_when(v, raw, trial, space, single_trial)
    search = sections["search"]
    if isinstance(search, schema.SearchConfig) and not search.objectives:
        search.objectives = schema.default_objectives(trial.data.dataset)  # resolved once, here
    if not single_trial:
        check_search(v, search, trial, space)
    check_objectives(v, search, sections["promote"], trial, space)
    if problems:
        raise ConfigError(problems)
    return schema.SweepConfig(name=name, description=description, trial=trial, space=space, source=file, **sections)


# ---- one trial --------------------------------------------------------------------------
def trial_to_dict(cfg: schema.TrialConfig) -> dict:
    return dataclasses.asdict(cfg)


def _trial(raw: dict, file: str) -> schema.TrialConfig:
    v = Validator(file)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, "(top level)", f"expected a mapping of trial sections, got {type(raw).__name__}")])
    for k in raw:
        if k not in TRIAL_CLASSES:
            v.problem(str(k), f"unknown key {k!r}; valid: {', '.join(TRIAL_CLASSES)}")
    cfg, _ = v.trial(raw, allow_dist=False)
    if v.problems:
        raise ConfigError(v.problems)
    return cfg


def trial_from_dict(d: dict) -> schema.TrialConfig:
    """Inverse of trial_to_dict (for checkpoints); validated, missing keys at defaults."""
    return _trial(d, "trial")


def resolve_trial(sweep: schema.SweepConfig, values: dict[str, Any]) -> schema.TrialConfig:
    """The TrialConfig of one sampled point: fixed values + `values` + conditional defaults."""
    cfg = apply(sweep.trial, values, sweep.space)
    return _trial(trial_to_dict(cfg), sweep.source or "trial")
