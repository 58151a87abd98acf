"""The search space: distributions over trial keys, sampled define-by-run with Optuna.

A sweep YAML may put a distribution at any leaf of the trial sections:

    loss:
      name: {choice: [ns, wgan-gp, hinge]}
      gp_weight: {loguniform: [0.1, 100], when: {loss.name: wgan-gp}}
    train:
      n_disc: {int: [1, 5], when: {loss.name: [wgan-gp]}, default: 1}

A param whose `when` fails is not suggested at all (truly conditional, so TPE does not
learn from a meaningless value); the trial then uses its `default:` if given, else the
base value (the dataclass default). The loader (ganpipe.config.load) validates the space;
the functions here assume a valid one.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.schema import TrialConfig

KINDS = ("choice", "loguniform", "uniform", "int")


class CycleError(ValueError):
    """`when:` conditions that refer to each other in a circle."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("condition cycle: " + " -> ".join(cycle))


@dataclass
class Param:
    path: str  # dotted trial key, e.g. "loss.gp_weight"
    kind: str  # one of KINDS
    choices: list | None = None  # kind == "choice"
    low: float | int | None = None  # numeric kinds
    high: float | int | None = None
    log: bool = False  # loguniform, or `int` with `log: true`
    when: dict[str, list] = field(default_factory=dict)  # all must hold (AND)
    default: Any = None  # used when `when` fails; None = keep the base value (no field takes None)


# ---- dotted access on a TrialConfig ---------------------------------------------------
def get_path(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _effective(path: str, values: dict, by_path: dict[str, Param], base: TrialConfig) -> Any:
    """The value `path` will have in the final TrialConfig, given the values so far.

    Conditions are evaluated against this, so they agree with what `apply` builds
    (an inactive param counts as its default, not as "missing").
    """
    if path in values:
        return values[path]
    param = by_path.get(path)
    if param is not None and param.default is not None:
        return param.default
    return get_path(base, path)


def _holds(param: Param, values: dict, by_path: dict[str, Param], base: TrialConfig) -> bool:
    return all(_effective(k, values, by_path, base) in allowed for k, allowed in param.when.items())


# ---- order -------------------------------------------------------------------------
def ordered(space: list[Param]) -> list[Param]:
    """Params sorted so each comes after the params its `when` refers to.

    Stable (keeps the YAML order where it can). Raises CycleError (a ValueError) if
    conditions are circular.
    """
    by_path = {p.path: p for p in space}
    out: list[Param] = []
    state: dict[str, int] = {}  # 1 = on the current DFS stack, 2 = done

    def visit(p: Param, stack: list[str]) -> None:
        if state.get(p.path) == 2:
            return
        if state.get(p.path) == 1:
            raise CycleError(stack[stack.index(p.path):] + [p.path])
        state[p.path] = 1
        for dep in p.when:
            if dep in by_path:
                visit(by_path[dep], stack + [p.path])
        state[p.path] = 2
        out.append(p)

    for p in space:
        visit(p, [])
    return out


# ---- sampling ----------------------------------------------------------------------
def suggest(trial, space: list[Param], base: TrialConfig | None = None) -> dict[str, Any]:
    """Define-by-run: suggest every param whose condition holds; returns {path: value}.

    `trial` is an optuna.Trial (also what Ray Tune's OptunaSearch passes to a
    define-by-run function). `base` supplies fixed keys that conditions refer to.
    """
    base = base if base is not None else TrialConfig()
    by_path = {p.path: p for p in space}
    values: dict[str, Any] = {}
    for p in ordered(space):
        if not _holds(p, values, by_path, base):
            continue  # absent from trial.params: the sampler never sees a dead value
        if p.kind == "choice":
            values[p.path] = trial.suggest_categorical(p.path, p.choices)
        elif p.kind == "int":
            values[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log)
        else:
            values[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high), log=p.kind == "loguniform")
    return values


def _middle(p: Param) -> Any:
    if p.kind == "choice":
        return p.choices[0]
    if p.kind == "uniform":
        return (p.low + p.high) / 2
    if p.kind == "loguniform":
        return math.sqrt(p.low * p.high)
    mid = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    return min(max(int(round(mid)), int(p.low)), int(p.high))


def first_values(space: list[Param], base: TrialConfig | None = None) -> dict[str, Any]:
    """A deterministic point for `ganpipe trial`: first choice / (geometric) midpoint."""
    base = base if base is not None else TrialConfig()
    by_path = {p.path: p for p in space}
    values: dict[str, Any] = {}
    for p in ordered(space):
        if _holds(p, values, by_path, base):
            values[p.path] = _middle(p)
    return values


# ---- building the trial ------------------------------------------------------------
def _set(cfg: Any, parts: list[str], value: Any) -> Any:
    """A copy of dataclass `cfg` with the dotted `parts` set (copies along the path only)."""
    name = parts[0]
    f = {x.name: x for x in dataclasses.fields(cfg)}.get(name)
    if f is None:
        raise KeyError(name)
    if len(parts) > 1:
        return dataclasses.replace(cfg, **{name: _set(getattr(cfg, name), parts[1:], value)})
    current = getattr(cfg, name)
    if dataclasses.is_dataclass(current):
        raise KeyError(name)  # a whole section is not a value
    # keep float fields floats when an `int:` distribution fed them
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return dataclasses.replace(cfg, **{name: value})


def apply(base: TrialConfig, values: dict[str, Any], space: list[Param] | None = None) -> TrialConfig:
    """A new TrialConfig: `base` with `values` ({dotted path: value}) set.

    With `space`, params absent from `values` (their `when` failed) that have a
    `default:` take it; without it they keep the base value. `resolve_trial` passes
    the sweep's space, so prefer it. Raises ConfigError for an unknown path.
    """
    cfg = base
    merged = {p.path: p.default for p in (space or ()) if p.default is not None and p.path not in values}
    merged.update(values)
    bad = []
    for path, value in merged.items():
        try:
            cfg = _set(cfg, path.split("."), value)
        except (KeyError, TypeError):
            bad.append(Problem("values", path, "unknown trial key"))
    if bad:
        raise ConfigError(bad)
    return cfg


# ---- for --dry-run -----------------------------------------------------------------
def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(space: list[Param]) -> str:
    """One line per param: path, distribution, condition and default."""
    if not space:
        return "(no search space: every trial uses the fixed values)"
    rows = []
    for p in ordered(space):
        if p.kind == "choice":
            dist = "choice [" + ", ".join(_fmt(c) for c in p.choices) + "]"
        else:
            kind = "int (log)" if p.kind == "int" and p.log else p.kind
            dist = f"{kind} [{_fmt(p.low)}, {_fmt(p.high)}]"
        extra = []
        if p.when:
            conds = [
                f"{k} = {_fmt(v[0])}" if len(v) == 1 else f"{k} in [" + ", ".join(_fmt(x) for x in v) + "]"
                for k, v in p.when.items()
            ]
            extra.append("when " + " and ".join(conds))
            if p.default is not None:
                extra.append(f"else {_fmt(p.default)}")
        rows.append((p.path, dist, "  ".join(extra)))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)
