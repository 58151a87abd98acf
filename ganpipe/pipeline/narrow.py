"""The `narrow` stage: a new search space that shrinks around the best trials of the last sweep.

Expressed as `--set` overrides on the same sweep file, so the narrowed sweep goes
through the same validation as any other and the overrides are logged with it.
"""
from __future__ import annotations

import json
import math
from typing import Any


from ganpipe.config.space import Param


def typed(param: Param, text: str) -> Any:
    """An MLflow param (a string) back to the param's value."""
    if param.kind == "choice":
        return next((c for c in param.choices if str(c) == text), None)
    return int(float(text)) if param.kind == "int" else float(text)


def _widen(lo: float, hi: float, p: Param, margin: float) -> tuple[float, float]:
    """[lo, hi] widened by `margin` of the original range's width (log-space for log params), clipped."""
    to, back = (math.log, math.exp) if p.log else (float, float)
    width = to(p.high) - to(p.low)
    lo_w = max(to(p.low), to(lo) - margin * width)
    hi_w = min(to(p.high), to(hi) + margin * width)
    return back(lo_w), back(hi_w)


def narrowed(param: Param, values: list[Any], margin: float) -> Any:
    """The new distribution (a dict) or fixed value of `param`, given its values in the best trials."""
    values = [v for v in values if v is not None]
    if not values:  # never active in the best trials: keep it as it was
        return None
    if param.kind == "choice":
        kept = [c for c in param.choices if c in values]
        return kept[0] if len(kept) == 1 else {"choice": kept}
    lo, hi = _widen(min(values), max(values), param, margin)
    if param.kind == "int":
        lo, hi = int(math.floor(lo)), int(math.ceil(hi))
        if lo == hi:
            return lo
        return {"int": [lo, hi], **({"log": True} if param.log else {})}
    if not lo < hi:
        return lo
    return {("loguniform" if param.log else "uniform"): [lo, hi]}


def narrowing_overrides(space: list[Param], best_params: list[dict[str, str]], margin: float) -> list[str]:
    """`--set` overrides that narrow `space` around the MLflow params of the best trials."""
    new: dict[str, Any] = {}
    for p in space:
        dist = narrowed(p, [typed(p, run[p.path]) for run in best_params if p.path in run], margin)
        if dist is not None:
            new[p.path] = dist
    overrides = []
    for p in space:
        if p.path not in new:
            continue
        dist = new[p.path]
        if p.when and not isinstance(dist, dict):
            dist = {"choice": [dist]}  # stays conditional: a fixed value would apply to every trial
        if isinstance(dist, dict):
            when = _possible_when(p, new)
            if when is None:  # its condition can no longer hold: it is fixed at its default
                dist = p.default
            elif when:
                dist["when"] = when
            if isinstance(dist, dict) and p.default is not None:
                dist["default"] = p.default
        if dist is not None:
            overrides.append(f"{p.path}={json.dumps(dist)}")  # JSON is YAML flow syntax
    return overrides


def _possible_when(p: Param, new: dict[str, Any]) -> dict | None:
    """p.when restricted to values the narrowed params can still take; None if it can never hold."""
    when = {}
    for key, allowed in p.when.items():
        target = new.get(key)
        if isinstance(target, dict) and "choice" in target:
            allowed = [a for a in allowed if a in target["choice"]]
        elif target is not None and not isinstance(target, dict):  # now fixed
            if target not in allowed:
                return None
            continue  # always holds: drop the clause
        if not allowed:
            return None
        when[key] = allowed
    return when
