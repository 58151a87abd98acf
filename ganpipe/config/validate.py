"""Validation of a parsed sweep mapping: types, names, ranges, distributions, conditions.

Everything here *collects* Problems instead of raising, so one run reports all of them.
The pure helpers (`coerce`, `constraint`) are reused for fixed values, distribution
bounds, choices, defaults and `when:` values alike.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import re
import typing
from functools import cache
from typing import Any

from ganpipe.config import schema
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.space import KINDS, CycleError, Param, apply, first_values, get_path, ordered

BAD = object()  # a value that failed its check (its Problem is already recorded)

# a section given as a plain string means this key: `loss: hinge` == `loss: {name: hinge}`
PRIMARY = {"data": "dataset", "model": "architecture", "loss": "name", "optimizer": "name"}

# key -> (low, low inclusive, high, high inclusive); None = unbounded
RANGES: dict[str, tuple] = {
    "model.latent_dim": (1, True, None, False),
    "model.width": (1, True, None, False),
    "model.ema_decay": (0, True, 1, False),
    "loss.gp_weight": (0, True, None, False),
    "loss.r1_weight": (0, True, None, False),
    "loss.cycle_weight": (0, True, None, False),
    "loss.identity_weight": (0, True, None, False),
    "optimizer.lr_g": (0, False, None, False),
    "optimizer.lr_d": (0, False, None, False),
    "optimizer.beta1": (0, True, 1, False),
    "optimizer.beta2": (0, True, 1, False),
    "train.steps": (1, True, None, False),
    "train.batch_size": (1, True, None, False),
    "train.n_disc": (1, True, None, False),
    "train.grad_clip": (0, True, None, False),
    "train.seed": (0, True, None, False),  # numpy / optuna seeds must be non-negative
    "data.image_size": (0, True, None, False),  # 0 = native; else supported_size()
    "eval.every": (1, True, None, False),
    "eval.num_samples": (0, True, None, False),
    "search.num_samples": (1, True, None, False),
    "search.seed": (0, True, None, False),
    "search.startup_trials": (0, True, None, False),
    "search.max_concurrent": (1, True, None, False),
    "search.scheduler.grace_period": (0, True, None, False),  # 0 = eval.every
    "search.scheduler.reduction_factor": (1, False, None, False),
    "resources.cpu": (0, False, None, False),
    "resources.gpu": (0, True, None, False),
    "failure.max_failures": (0, True, None, False),
    "failure.keep_checkpoints": (0, True, None, False),  # 0 = keep all
    "promote.min_diversity": (0, True, None, False),
    "promote.max_fid": (0, False, None, True),
    "promote.recheck_top_k": (0, True, None, False),
    "promote.recheck_seeds": (1, True, None, False),
}

# key -> (what it is, module, registry dict); imported lazily: torch-heavy modules
REGISTRIES = {
    "data.dataset": ("dataset", "ganpipe.data", "DATASETS"),
    "model.architecture": ("architecture", "ganpipe.nets", "ARCHITECTURES"),
    "loss.name": ("loss", "ganpipe.losses", "LOSSES"),
    "optimizer.name": ("optimizer", "ganpipe.train.optim", "OPTIMIZERS"),
}
STATIC_NAMES = {
    "search.sampler": ("sampler", ("tpe", "random", "cmaes")),
    "search.scheduler.name": ("scheduler", ("asha", "none")),
    "search.scheduler.metric": ("scheduler metric", ("fid", "diversity")),
}
OBJECTIVES = (["fid"], ["fid", "diversity"])
PRDC_K = 5  # ganpipe.metrics.protocol.K (not imported: torch-heavy), pinned equal by a test

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
DIST_KEYS = (*KINDS, "when", "default", "log")


# ---- the schema, as types --------------------------------------------------------------
@cache
def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (schema.py uses string annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


TRIAL_CLASSES: dict[str, type] = fields_of(schema.TrialConfig)
# search, resources, failure, promote, tracking (`trial` is spread over the six sections)
SWEEP_CLASSES: dict[str, type] = {
    k: t for k, t in fields_of(schema.SweepConfig).items() if dataclasses.is_dataclass(t) and k != "trial"
}
TOP_KEYS = ("name", "description", *schema.TRIAL_SECTIONS, *SWEEP_CLASSES)


def field_type(path: str) -> Any | None:
    """The annotation of a dotted key (trial or sweep section), or None if unknown."""
    parts = path.split(".")
    cls = TRIAL_CLASSES.get(parts[0]) or SWEEP_CLASSES.get(parts[0])
    for part in parts[1:]:
        if cls is None or not dataclasses.is_dataclass(cls):
            return None
        cls = fields_of(cls).get(part)
    return cls if len(parts) > 1 else None


def trial_keys() -> list[str]:
    return [f"{s}.{k}" for s, cls in TRIAL_CLASSES.items() for k in fields_of(cls)]


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        t, "a list of strings"
    )


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


# ---- pure checks: return (value, None) or (BAD, message) -------------------------------
def coerce(value: Any, typ: Any) -> tuple[Any, str | None]:
    """Check `value` against a field annotation, converting what YAML gets wrong.

    PyYAML reads `1e-3` (no dot) as a string, so numeric strings become numbers.
    """
    bad = (BAD, f"expected {_type_name(typ)}, got {_show(value)}")
    if typ is bool:
        return (value, None) if isinstance(value, bool) else bad
    if typ is str:
        return (value, None) if isinstance(value, str) else bad
    if typ in (int, float):
        if isinstance(value, bool):
            return bad
        if isinstance(value, str) and NUMBER_RE.match(value.strip()):
            value = float(value)
        if not isinstance(value, (int, float)):
            return bad
        if isinstance(value, float) and math.isnan(value):
            return BAD, "expected a number, got NaN"
        if typ is float:
            return float(value), None
        if isinstance(value, float):
            if not value.is_integer():
                return BAD, f"expected an integer, got {_show(value)}"
            value = int(value)
        return value, None
    if typing.get_origin(typ) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value), None
        return bad
    return BAD, f"unsupported field type {typ}"  # a schema field this module does not know


def registry_names(key: str) -> tuple[str, list[str]] | None:
    """(what, valid names) for a named-choice key, else None."""
    if key in STATIC_NAMES:
        what, names = STATIC_NAMES[key]
        return what, list(names)
    if key in REGISTRIES:
        what, module, attr = REGISTRIES[key]
        return what, list(getattr(importlib.import_module(module), attr))
    return None


def primary_noun(section: str) -> str:
    """'a loss name', 'an architecture name': what a shorthand section string means."""
    what = REGISTRIES[f"{section}.{PRIMARY[section]}"][0]
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what} name"


def _range_text(lo, lo_inc, hi, hi_inc) -> str:
    if hi is None:
        return f"{'>=' if lo_inc else '>'} {lo:g}"
    if lo is None:
        return f"{'<=' if hi_inc else '<'} {hi:g}"
    return f"in {'[' if lo_inc else '('}{lo:g}, {hi:g}{']' if hi_inc else ')'}"


def constraint(key: str, value: Any) -> str | None:
    """The problem with an already typed `value` at `key` (range, registry), or None."""
    if key == "search.objectives" and value not in OBJECTIVES:
        return f"must be [fid] or [fid, diversity], got [{', '.join(value)}]"
    names = registry_names(key)
    if names is not None:
        what, valid = names
        if value not in valid:
            return f"unknown {what} {_show(value)}; valid: {', '.join(valid)}"
    if key == "data.image_size" and isinstance(value, int) and value > 0:
        from ganpipe.data.files import supported_size

        if not supported_size(value):
            return ("must be 0 (native) or a size the networks can make, 4 or 7 times a power of 2 "
                    f"(8, 14, 16, 28, 32, 64, ...), got {value}")
    if key == "eval.num_samples" and isinstance(value, int) and 0 < value <= PRDC_K:
        return f"must be 0 (the dataset's protocol default) or more than k={PRDC_K} (k-NN radii), got {value}"
    if key == "promote.model_name" and value and not NAME_RE.match(value):
        # MLflow refuses '/' and ':' in model names, and '@' would split models:/NAME@ALIAS
        return f"must be empty or 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit; got {value!r}"
    if key == "data.channels" and value not in (0, 1, 3):
        return f"must be 0 (native), 1 or 3, got {_show(value)}"
    if isinstance(value, float) and math.isinf(value) and key != "promote.max_fid":
        return "must be finite"
    if key in RANGES and isinstance(value, (int, float)):
        lo, lo_inc, hi, hi_inc = RANGES[key]
        ok = (lo is None or value > lo or (lo_inc and value == lo)) and (
            hi is None or value < hi or (hi_inc and value == hi)
        )
        if not ok:
            return f"must be {_range_text(lo, lo_inc, hi, hi_inc)}, got {_show(value)}"
    return None


def check(key: str, value: Any, typ: Any) -> tuple[Any, str | None]:
    value, msg = coerce(value, typ)
    if msg is None:
        msg = constraint(key, value)
    return (BAD, msg) if msg else (value, None)


# ---- the validator ---------------------------------------------------------------------
class Validator:
    """Walks a raw sweep mapping, building typed sections and recording Problems."""

    def __init__(self, file: str, overridden: dict[str, str] | None = None):
        self.file = file
        self.overridden = overridden or {}  # key -> where an override set it ("--set"): its problems name that
        self.problems: list[Problem] = []

    def set_by(self, key: str) -> str | None:
        """Where an override set `key` (or a section above it), None if the file did."""
        return next((label for o, label in self.overridden.items() if key == o or key.startswith(o + ".")), None)

    def problem(self, key: str, message: str, related: tuple[str, ...] = ()) -> None:
        """`related`: the other keys a cross-key problem depends on; when one of them came from an override and
        `key` from the file, the file is named "with" those overrides, so neither takes the whole blame."""
        source = self.set_by(key)
        if source is None:
            by_set = {r: self.set_by(r) for r in related if r != key and self.set_by(r)}
            source = (f"{self.file} (with " + ", ".join(f"{label} {r}" for r, label in by_set.items()) + ")"
                      if by_set else self.file)
        self.problems.append(Problem(source, key, message))

    # -- sections --
    def section(self, cls: type, raw: Any, key: str, allow_dist: bool, space: list[Param]):
        """An instance of dataclass `cls` from `raw` (defaults where absent or bad)."""
        if raw is None:
            raw = {}
        if isinstance(raw, str) and key in PRIMARY:
            raw = {PRIMARY[key]: raw}
        if not isinstance(raw, dict):
            hint = f" or {primary_noun(key)}" if key in PRIMARY else ""
            self.problem(key, f"expected a mapping{hint}, got {_show(raw)}")
            return cls()
        fields = fields_of(cls)
        for k in raw:
            if k not in fields:
                self.problem(f"{key}.{k}", f"unknown key {_show(k)}; valid: {', '.join(fields)}")
        kwargs = {}
        for name, typ in fields.items():
            if name not in raw:
                continue
            path, value = f"{key}.{name}", raw[name]
            if dataclasses.is_dataclass(typ):
                kwargs[name] = self.section(typ, value, path, allow_dist, space)
            elif isinstance(value, dict):
                if allow_dist:
                    param = self.distribution(path, value, typ)
                    if param is not None:
                        space.append(param)
                else:
                    self.problem(
                        path,
                        f"expected {_type_name(typ)}; search distributions are only allowed in "
                        f"the trial sections ({', '.join(schema.TRIAL_SECTIONS)})",
                    )
            else:
                value, msg = check(path, value, typ)
                if msg:
                    self.problem(path, msg)
                else:
                    kwargs[name] = value
        return cls(**kwargs)

    def trial(self, raw: dict, allow_dist: bool) -> tuple[schema.TrialConfig, list[Param]]:
        space: list[Param] = []
        sections = {
            s: self.section(cls, raw.get(s), s, allow_dist, space) for s, cls in TRIAL_CLASSES.items()
        }
        return schema.TrialConfig(**sections), space

    # -- distributions --
    def distribution(self, path: str, raw: dict, typ: Any) -> Param | None:
        n = len(self.problems)
        kinds = [k for k in raw if k in KINDS]
        for k in raw:
            if k not in DIST_KEYS:
                self.problem(f"{path}.{k}", f"unknown key {_show(k)} in a distribution; valid: {', '.join(DIST_KEYS)}")
        if len(kinds) != 1:
            got = "none" if not kinds else " and ".join(kinds)
            self.problem(path, f"a distribution needs exactly one of {', '.join(KINDS)}; got {got}")
            return None
        kind = kinds[0]
        spec = raw[kind]
        param = Param(path, kind)
        if kind == "choice":
            param.choices = self._choices(path, spec, typ)
        else:
            param.low, param.high = self._bounds(path, kind, spec, typ)
        log = raw.get("log", False)
        if "log" in raw and kind != "int":
            self.problem(f"{path}.log", "log: applies to int only; use loguniform for a log-scale float")
        elif not isinstance(log, bool):
            self.problem(f"{path}.log", f"expected true or false, got {_show(log)}")
        param.log = kind == "loguniform" or (kind == "int" and log is True)
        if param.log and kind == "int" and param.low is not None and param.low < 1:
            self.problem(path, f"int with log: true needs a low bound >= 1, got {param.low}")
        param.when = self._when_syntax(path, raw.get("when", {}))
        if "default" in raw:
            value, msg = check(path, raw["default"], typ)
            if msg:
                self.problem(f"{path}.default", msg)
            param.default = None if value is BAD else value
        return param if len(self.problems) == n else None

    def _choices(self, path: str, spec: Any, typ: Any) -> list | None:
        if not isinstance(spec, list) or not spec:
            self.problem(path, f"choice: needs a non-empty list of values, got {_show(spec)}")
            return None
        out = []
        for i, v in enumerate(spec):
            if not (v is None or isinstance(v, (str, int, float, bool))):
                self.problem(path, f"choice {i}: {_show(v)} is not a scalar (Optuna choices are str/int/float/bool)")
                continue
            value, msg = check(path, v, typ)
            if msg:
                self.problem(path, f"choice {_show(v)}: {msg}")
            else:
                out.append(value)
        if len(set(map(repr, out))) != len(out):
            self.problem(path, "choice: values repeat")
        return out

    def _bounds(self, path: str, kind: str, spec: Any, typ: Any) -> tuple:
        if typ not in (int, float):
            self.problem(path, f"{kind}: needs a numeric key; {path} is {_type_name(typ)}, use choice:")
            return None, None
        if typ is int and kind != "int":
            self.problem(path, f"{kind}: gives fractions but {path} is an integer; use int: (log: true for a log scale)")
            return None, None
        if not isinstance(spec, list) or len(spec) != 2:
            self.problem(path, f"{kind}: needs [low, high], got {_show(spec)}")
            return None, None
        bound_type = int if kind == "int" else float
        bounds = []
        for v in spec:
            value, msg = coerce(v, bound_type)
            if msg:
                self.problem(path, f"{kind}: bound {_show(v)}: {msg}")
                return None, None
            bounds.append(value)
        lo, hi = bounds
        if not lo < hi:
            self.problem(path, f"{kind}: low must be < high, got [{lo}, {hi}]")
        elif kind == "loguniform" and lo <= 0:
            self.problem(path, f"loguniform: low must be > 0, got {lo}")
        else:
            for b in (lo, hi):  # the whole sampled range must be allowed
                msg = constraint(path, b)
                if msg:
                    self.problem(path, f"{kind}: range [{lo:g}, {hi:g}] leaves the allowed values: {msg}")
                    break
        return lo, hi

    def _when_syntax(self, path: str, raw: Any) -> dict[str, list]:
        if not isinstance(raw, dict):
            self.problem(f"{path}.when", f"expected a mapping {{key.path: value or [values]}}, got {_show(raw)}")
            return {}
        when = {}
        for k, v in raw.items():
            typ = field_type(k) if isinstance(k, str) and k.split(".")[0] in TRIAL_CLASSES else None
            if typ is None:
                self.problem(f"{path}.when", f"unknown key {_show(k)}; a condition names a trial key, e.g. loss.name")
                continue
            if k == path:
                self.problem(f"{path}.when", "a param cannot be conditional on itself")
                continue
            values = v if isinstance(v, list) else [v]
            good = []
            for x in values:
                value, msg = check(k, x, typ)
                if msg:
                    self.problem(f"{path}.when", f"{k}: {msg}")
                else:
                    good.append(value)
            if not values:
                self.problem(f"{path}.when", f"{k}: needs at least one value")
            when[k] = good
        return when

    # -- across keys --
    def conditions(self, space: list[Param], base: schema.TrialConfig) -> list[Param]:
        """`when:` values the referenced param can take; cycles; returns the ordered space."""
        by_path = {p.path: p for p in space}
        for p in space:
            for k, values in p.when.items():
                ref = by_path.get(k)
                if ref is None:
                    continue  # a fixed key: a condition that never holds may be meant for --set
                if ref.kind in ("uniform", "loguniform"):  # a sampled float equals a given value almost never
                    self.problem(f"{p.path}.when", f"{k} is drawn from a continuous {ref.kind} range, so it never "
                                 "equals a given value; condition on a choice or int parameter")
                    continue
                # when `ref` is itself conditional it may also hold its fallback value
                fallback = ref.default if ref.default is not None else get_path(base, k)
                for v in values:
                    if ref.kind == "choice":
                        ok = v in ref.choices
                        allowed = "[" + ", ".join(map(_show, ref.choices)) + "]"
                    else:
                        ok = ref.low <= v <= ref.high and (ref.kind != "int" or float(v).is_integer())
                        allowed = f"{ref.kind} [{ref.low:g}, {ref.high:g}]"
                    if not ok and not (ref.when and v == fallback):
                        self.problem(f"{p.path}.when", f"{k} can never be {_show(v)}; it is {allowed}")
        try:
            return ordered(space)
        except CycleError as e:
            self.problem(f"{e.cycle[0]}.when", str(e))
            return list(space)


# ---- datasets read from files: data.root, size, channels, eval.features --------------------
FILE_KEYS = ("data.root", "data.image_size", "data.channels", "eval.features", "eval.inception_weights")
INCEPTION_NAMES = ("inception", "inception-v3", "inceptionv3", "inception_v3", "fid-inception")


def _candidates(v: Validator, key: str, trial: schema.TrialConfig, by_path: dict[str, Param]) -> list | None:
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


def _absolute(path: str) -> str:
    """Trials may run in another working directory (Ray workers): paths are made absolute once."""
    from pathlib import Path

    return str(Path(path).expanduser().absolute()) if path and path.lower() not in INCEPTION_NAMES else path


def check_files(v: Validator, trial: schema.TrialConfig, space: list[Param], features: bool = True) -> None:
    """Cross-key checks of the datasets read from files, cheap enough to run before anything
    starts (headers and listings): the root is there and readable as the dataset, the size
    fits the networks, and (with `features`) the evaluation's feature classifier exists and
    fits the data. Makes data.root and eval.features absolute, in `trial` and in `space`."""
    if any(p.key.startswith(("data.", "eval.features")) for p in v.problems):
        return  # the values themselves are wrong: checking files against them only adds noise
    for key in ("data.root", "eval.features", "eval.inception_weights"):
        section, name = key.split(".")
        setattr(getattr(trial, section), name, _absolute(get_path(trial, key)))
        for p in space:
            if p.path == key:
                p.choices = [_absolute(c) for c in p.choices or []]
                p.default = _absolute(p.default) if p.default else p.default
    by_path = {p.path: p for p in space}
    cands = {k: _candidates(v, k, trial, by_path) for k in ("data.dataset", *FILE_KEYS)}
    if any(c is None for c in cands.values()):
        return
    from ganpipe.data.files import FILE_DATASETS, WHAT, DataRootError, probe

    seen: set[tuple[str, str]] = set()

    def problem(key: str, msg: str) -> None:
        if (key, msg) not in seen:
            seen.add((key, msg))
            v.problem(key, msg, related=("data.dataset", *FILE_KEYS))

    datasets = cands["data.dataset"]
    builtin = [d for d in datasets if d not in FILE_DATASETS]
    if builtin:
        for key in FILE_KEYS:
            if any(cands[key]):
                may = "may be" if len(datasets) > 1 else "is"
                problem(key, f"only for datasets read from files ({', '.join(FILE_DATASETS)}); "
                             f"data.dataset {may} {builtin[0]}, which is built in: leave {key} unset")
    for name in (d for d in datasets if d in FILE_DATASETS):
        for root in cands["data.root"]:
            if not root:
                problem("data.root", f"required for {name}: the folder with {WHAT[name]}")
                continue
            for size in cands["data.image_size"]:
                for channels in cands["data.channels"]:
                    try:
                        info = probe(name, root, size, channels)
                    except DataRootError as e:
                        problem(e.key, str(e))
                        continue
                    if features:
                        for feat in cands["eval.features"]:
                            msg = features_problem(name, root, size, channels, info, feat)
                            if msg:
                                problem("eval.features", msg)
    from_files = any(d in FILE_DATASETS for d in datasets)  # else eval.features was refused above: no more noise
    if features and from_files and any(f.lower() in INCEPTION_NAMES for f in cands["eval.features"] if f):
        for weights in cands["eval.inception_weights"]:
            msg = inception_problem(weights)
            if msg:
                problem("eval.inception_weights", msg)


def inception_problem(weights: str) -> str | None:
    """A missing FID Inception weights file (checked by name only: loading it takes seconds)."""
    from pathlib import Path

    from ganpipe.metrics.inception import default_weights_path, missing_message

    path = Path(weights).expanduser() if weights else default_weights_path()
    return None if path.is_file() else missing_message(path)


def features_problem(name: str, root: str, size: int, channels: int, info, feat: str) -> str | None:
    """What is wrong with the feature classifier a dataset from files would be evaluated with."""
    from pathlib import Path

    from ganpipe.metrics.image_classifier import default_features_path, read_metadata

    if feat.lower() in INCEPTION_NAMES:
        return None  # the weights file is checked apart (inception_problem)
    c, s, _ = info.shape
    path = Path(feat).expanduser() if feat else default_features_path(name, s, c)
    train = f"ganpipe features train {name} --set data.root={root}"
    train += (f" --set data.image_size={size}" if size else "") + (f" --set data.channels={channels}" if channels else "")
    train = f"train one with: {train}"
    if info.n_classes == 0:  # nothing to train on this data: say what else fits
        train = (f"an unlabelled image folder ({root} has no class sub-folders) cannot train one: point "
                 f"eval.features at a classifier trained elsewhere on labelled {s}x{s} images with {c} channel(s) "
                 f"(`ganpipe features train DATASET --set data.image_size={s} --out FILE`), or use "
                 "eval.features=inception")
    if not path.is_file():
        if info.n_classes == 0:
            return f"no feature classifier at {path}; {train}"
        return f"no feature classifier for {name} at {path}; {train}" + (f" --out {path}" if feat else "")
    try:
        meta = read_metadata(path)
    except ValueError as e:
        return str(e)
    if (meta["channels"], meta["image_size"]) != (c, s):
        return (f"{path} was trained on {meta['dataset']} at {meta['image_size']}x{meta['image_size']} with "
                f"{meta['channels']} channel(s), but the data is {s}x{s} with {c}; {train}")
    if info.n_classes and len(meta["classes"]) != info.n_classes:
        return (f"{path} tells {len(meta['classes'])} classes ({meta['dataset']}), the data has {info.n_classes}; "
                f"the class statistics need a classifier of the same classes; {train}")
    return None


# ---- class-conditional GANs: labelled images, an architecture with a conditional variant ------
LABELLED_BUILTIN = ("digits",)


def check_conditional(v: Validator, trial: schema.TrialConfig, space: list[Param]) -> None:
    """model.conditional: true needs labelled data and dcgan/resnet, for every value the sweep may pick."""
    if any(p.key.startswith(("model.", "data.", "eval.features")) for p in v.problems):
        return
    by_path = {p.path: p for p in space}
    cond = by_path.get("model.conditional")
    values = _candidates(v, "model.conditional", trial, by_path)
    if not values or True not in values:
        return
    from ganpipe.nets import CONDITIONAL_ARCHITECTURES

    def problem(msg: str) -> None:
        v.problem("model.conditional", msg, related=("model.architecture", "data.dataset", "data.root", "eval.features"))

    archs = _candidates(v, "model.architecture", trial, by_path) or []
    if cond is not None and "model.architecture" in cond.when:
        archs = [a for a in archs if a in cond.when["model.architecture"]]
    bad = [a for a in archs if a not in CONDITIONAL_ARCHITECTURES]
    if bad:
        may = "may be" if len(archs) > 1 else "is"
        problem(f"true needs architecture {' or '.join(CONDITIONAL_ARCHITECTURES)} (class-conditional G, "
                f"projection D); model.architecture {may} {bad[0]}"
                + (": search it with when: {model.architecture: [dcgan, resnet]}" if may == "may be" else ""))
    if any(f and f.lower() in INCEPTION_NAMES for f in _candidates(v, "eval.features", trial, by_path) or []):
        problem("true needs a classifier of the data's classes for its class metrics; "
                "eval.features inception has none: leave eval.features to the dataset's classifier")
    from ganpipe.data.files import FILE_DATASETS, DataRootError, probe

    for name in _candidates(v, "data.dataset", trial, by_path) or []:
        if name in FILE_DATASETS:
            try:
                labelled = probe(name, trial.data.root, trial.data.image_size, trial.data.channels).n_classes > 1
            except (DataRootError, ValueError):
                continue  # check_files has said what is wrong with the files
            what = f"{trial.data.root} has no class sub-folders"
        else:
            labelled, what = name in LABELLED_BUILTIN, f"{name} has no class labels to condition on"
        if not labelled:
            problem(f"true needs labelled data (digits, mnist, fashion-mnist, cifar10, or an "
                    f"image-folder with one sub-folder per class); {what}")


def check_translation(v: Validator, trial: schema.TrialConfig, space: list[Param]) -> None:
    """Translation datasets (CycleGAN) train image-to-image networks: resnet or dcgan, unconditional."""
    if any(p.key.startswith(("model.", "data.")) for p in v.problems):
        return
    by_path = {p.path: p for p in space}
    from ganpipe.data.registry import TRANSLATION_DATASETS

    tasks = [d for d in _candidates(v, "data.dataset", trial, by_path) or [] if d in TRANSLATION_DATASETS]
    if not tasks:
        return
    from ganpipe.nets.translation import TRANSLATION_ARCHITECTURES

    for arch in _candidates(v, "model.architecture", trial, by_path) or []:
        if arch not in TRANSLATION_ARCHITECTURES:
            v.problem("model.architecture", f"data.dataset {tasks[0]} trains image-to-image networks: "
                                            f"{' or '.join(TRANSLATION_ARCHITECTURES)}, got {arch}", related=("data.dataset",))


# key -> (the key that decides whether it is used, the values under which it is)
ONLY_WHEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "loss.gp_weight": ("loss.name", ("wgan-gp",)),
    "optimizer.beta1": ("optimizer.name", ("adam",)),
    "optimizer.beta2": ("optimizer.name", ("adam",)),
    "loss.cycle_weight": ("data.dataset", ("digits-translation",)),
    "loss.identity_weight": ("data.dataset", ("digits-translation",)),
}


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
    trial of `ganpipe trial`, whose searched keys take their first values.
    A distribution whose `when` never holds is a conditional parameter under a fixed parent: fine. So is a
    file's value made unused by a --set of the key deciding it (`--set loss=hinge` on a wgan-gp sweep)."""
    by_path = {p.path: p for p in space}
    first = None
    if single_trial:
        try:
            first = apply(trial, first_values(space, trial), space)
        except (ValueError, KeyError, ConfigError):
            return  # a broken space: its problems are reported already
    for key, (decider, allowed) in ONLY_WHEN.items():
        if key in by_path or not given(raw, key) or any(p.key in (key, decider) for p in v.problems):
            continue
        if v.set_by(decider) and not v.set_by(key):
            continue
        values = [get_path(first, decider)] if first is not None else _candidates(v, decider, trial, by_path)
        if values is None or any(x in allowed for x in values):
            continue  # None: a non-choice distribution, just reported by _candidates
        if len(values) > 1:
            state = f"can only be {', '.join(map(str, values))}"
        else:
            state = f"is {values[0]}" + (" (its first value)" if first is not None and decider in by_path else "")
        fix = (f"add --set {decider}={allowed[0]}, or leave {key} out" if v.set_by(key)
               else f"leave {key} out")
        v.problem(key, f"has no effect: it is used only when {decider} is {' or '.join(allowed)}, and {decider} "
                       f"{state}: {fix}", related=(decider,))
