"""The tree walker: a parsed sweep mapping -> typed sections, a search space, and Problems.

Everything here *collects* Problems instead of raising, so one run reports all of them. Each value
is checked by ganpipe.config.values (type, then what its schema field allows); distributions and
their `when:` conditions are checked here. The rules across keys are in ganpipe.config.rules;
nothing here reads the disk (ganpipe.preflight does) or changes a value it was given.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ganpipe.config.schema as schema
from ganpipe.config.errors import Problem
from ganpipe.config.space import KINDS, CycleError, Param, get_path, ordered
from ganpipe.config.values import (
    BAD,
    PRIMARY,
    TRIAL_CLASSES,
    check,
    coerce,
    constraint,
    field_type,
    fields_of,
    primary_noun,
    show,
    type_name,
)

DIST_KEYS = (*KINDS, "when", "default", "log")

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
            self.problem(key, f"expected a mapping{hint}, got {show(raw)}")
            return cls()
        fields = fields_of(cls)
        for k in raw:
            if k not in fields:
                self.problem(f"{key}.{k}", f"unknown key {show(k)}; valid: {', '.join(fields)}")
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
                        f"expected {type_name(typ)}; search distributions are only allowed in "
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
                self.problem(f"{path}.{k}", f"unknown key {show(k)} in a distribution; valid: {', '.join(DIST_KEYS)}")
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
            self.problem(f"{path}.log", f"expected true or false, got {show(log)}")
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
            self.problem(path, f"choice: needs a non-empty list of values, got {show(spec)}")
            return None
        out = []
        for i, v in enumerate(spec):
            if not (v is None or isinstance(v, (str, int, float, bool))):
                self.problem(path, f"choice {i}: {show(v)} is not a scalar (Optuna choices are str/int/float/bool)")
                continue
            value, msg = check(path, v, typ)
            if msg:
                self.problem(path, f"choice {show(v)}: {msg}")
            else:
                out.append(value)
        if len(set(map(repr, out))) != len(out):
            self.problem(path, "choice: values repeat")
        return out

    def _bounds(self, path: str, kind: str, spec: Any, typ: Any) -> tuple:
        if typ not in (int, float):
            self.problem(path, f"{kind}: needs a numeric key; {path} is {type_name(typ)}, use choice:")
            return None, None
        if typ is int and kind != "int":
            self.problem(path, f"{kind}: gives fractions but {path} is an integer; use int: (log: true for a log scale)")
            return None, None
        if not isinstance(spec, list) or len(spec) != 2:
            self.problem(path, f"{kind}: needs [low, high], got {show(spec)}")
            return None, None
        bound_type = int if kind == "int" else float
        bounds = []
        for v in spec:
            value, msg = coerce(v, bound_type)
            if msg:
                self.problem(path, f"{kind}: bound {show(v)}: {msg}")
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
            self.problem(f"{path}.when", f"expected a mapping {{key.path: value or [values]}}, got {show(raw)}")
            return {}
        when = {}
        for k, v in raw.items():
            typ = field_type(k) if isinstance(k, str) and k.split(".")[0] in TRIAL_CLASSES else None
            if typ is None:
                self.problem(f"{path}.when", f"unknown key {show(k)}; a condition names a trial key, e.g. loss.name")
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
                        allowed = "[" + ", ".join(map(show, ref.choices)) + "]"
                    else:
                        ok = ref.low <= v <= ref.high and (ref.kind != "int" or float(v).is_integer())
                        allowed = f"{ref.kind} [{ref.low:g}, {ref.high:g}]"
                    if not ok and not (ref.when and v == fallback):
                        self.problem(f"{p.path}.when", f"{k} can never be {show(v)}; it is {allowed}")
        try:
            return ordered(space)
        except CycleError as e:
            self.problem(f"{e.cycle[0]}.when", str(e))
            return list(space)

