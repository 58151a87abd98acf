"""One value against its field: the type (`coerce`) and what the field's metadata allows (`constraint`).

Pure: (value, None) or (BAD, message). Reused for fixed values, distribution bounds, choices,
defaults and `when:` values alike. What each key allows lives on the schema's fields
(ganpipe.config.schema, `metadata(key)`), not in tables here.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

import ganpipe.config.schema as schema
from ganpipe.config.schema import fields_of

BAD = object()  # a value that failed its check (its Problem is already recorded)

# a section given as a plain string means this key: `loss: hinge` == `loss: {name: hinge}`
PRIMARY = {"data": "dataset", "model": "architecture", "loss": "name", "optimizer": "name"}

NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

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


def type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        t, "a list of strings"
    )


def show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


# ---- pure checks: return (value, None) or (BAD, message) -------------------------------
def coerce(value: Any, typ: Any) -> tuple[Any, str | None]:
    """Check `value` against a field annotation, converting what YAML gets wrong.

    PyYAML reads `1e-3` (no dot) as a string, so numeric strings become numbers.
    """
    bad = (BAD, f"expected {type_name(typ)}, got {show(value)}")
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
                return BAD, f"expected an integer, got {show(value)}"
            value = int(value)
        return value, None
    if typing.get_origin(typ) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value), None
        return bad
    return BAD, f"unsupported field type {typ}"  # a schema field this module does not know


def primary_noun(section: str) -> str:
    """'a loss name', 'an architecture name': what a shorthand section string means."""
    what = schema.metadata(f"{section}.{PRIMARY[section]}")["what"]
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what} name"


def _range_text(lo, lo_inc, hi, hi_inc) -> str:
    if hi is None:
        return f"{'>=' if lo_inc else '>'} {lo:g}"
    if lo is None:
        return f"{'<=' if hi_inc else '<'} {hi:g}"
    return f"in {'[' if lo_inc else '('}{lo:g}, {hi:g}{']' if hi_inc else ')'}"


def constraint(key: str, value: Any) -> str | None:
    """The problem with an already typed `value` at `key` (named choices, test, range), or None."""
    meta = schema.metadata(key)
    if "choices" in meta and value not in meta["choices"]:
        return f"unknown {meta['what']} {show(value)}; valid: {', '.join(meta['choices'])}"
    if "test" in meta:
        ok, message = meta["test"]
        if not ok(value):
            return message.format(value="[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else show(value))
    if isinstance(value, float) and math.isinf(value) and not meta.get("infinite"):
        return "must be finite"
    if "range" in meta and isinstance(value, (int, float)):
        lo, lo_inc, hi, hi_inc = meta["range"]
        ok = (lo is None or value > lo or (lo_inc and value == lo)) and (
            hi is None or value < hi or (hi_inc and value == hi)
        )
        if not ok:
            return f"must be {_range_text(lo, lo_inc, hi, hi_inc)}, got {show(value)}"
    return None


def check(key: str, value: Any, typ: Any) -> tuple[Any, str | None]:
    value, msg = coerce(value, typ)
    if msg is None:
        msg = constraint(key, value)
    return (BAD, msg) if msg else (value, None)
