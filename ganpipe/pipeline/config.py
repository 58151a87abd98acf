"""Pipeline YAML: an ordered list of stages over one sweep file, validated before anything runs.

    name: ring8-pipeline            # MLflow experiment of every stage
    sweep: ../sweeps/ring8.yaml     # relative to this file
    set: [train.steps=4000]         # overrides for every stage (like --set)
    stages:
      - {name: broad,   kind: sweep,   set: [search.num_samples=8]}
      - {name: narrow,  kind: narrow,  top_k: 3, margin: 0.1}
      - {name: recheck, kind: recheck, top_k: 2, seeds: 3}
      - {name: promote, kind: promote}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganpipe.config import ConfigError, Problem, yamlfile
from ganpipe.preflight import load_checked_sweep

KINDS = {
    "sweep": {"name", "kind", "set"},
    "narrow": {"name", "kind", "set", "top_k", "margin"},
    "recheck": {"name", "kind", "top_k", "seeds"},
    "promote": {"name", "kind", "set"},
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Stage:
    name: str
    kind: str  # sweep | narrow | recheck | promote
    set: list[str] = field(default_factory=list)  # overrides of this stage's sweep
    top_k: int = 3  # narrow: trials that define the new ranges; recheck: configs re-trained
    margin: float = 0.1  # narrow: widen around the best values by this share of the original range
    seeds: int = 3  # recheck


@dataclass
class Pipeline:
    name: str
    sweep_path: Path
    set: list[str]
    stages: list[Stage]
    source: str


def _int(v, problems, file, key, lo):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        problems.append(Problem(file, key, f"expected an integer >= {lo}, got {v!r}"))


def load_pipeline(path: str | Path, overrides: list[str] = ()) -> Pipeline:
    file = str(path)
    try:
        raw = yamlfile.load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([Problem(file, "(file)", f"cannot read: {err.strerror or err}")])
    except UnicodeDecodeError as err:
        raise ConfigError([Problem(file, "(file)", f"not a UTF-8 text file (byte {err.start}): a pipeline file is "
                                                   "YAML text")])
    except yaml.YAMLError as err:
        raise ConfigError([Problem(file, "(yaml)", f"not valid YAML: {yamlfile.describe(err)}")])
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, "(top level)", "expected a mapping with name, sweep, stages")])
    problems: list[Problem] = []
    for key in raw:
        if key not in ("name", "description", "sweep", "set", "stages"):
            problems.append(Problem(file, str(key), "unknown key; valid: name, description, sweep, set, stages"))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(Problem(file, "name", f"required: 1-100 letters, digits, '.', '_' or '-'; got {name!r}"))
    sweep = raw.get("sweep")
    sweep_path = None
    if not isinstance(sweep, str):
        problems.append(Problem(file, "sweep", f"required: the path of a sweep YAML (relative to this file), got {sweep!r}"))
    else:
        sweep_path = (Path(path).parent / sweep).resolve()
        if not sweep_path.is_file():
            problems.append(Problem(file, "sweep", f"no sweep file at {sweep_path}"))
    common = raw.get("set", []) or []
    if not isinstance(common, list) or not all(isinstance(s, str) for s in common):
        problems.append(Problem(file, "set", "expected a list of 'key.path=value' strings"))
        common = []
    stages = _stages(raw.get("stages"), file, problems)
    if problems:
        raise ConfigError(problems)
    pipeline = Pipeline(name, sweep_path, list(common) + list(overrides), stages, file)
    for i, stage in enumerate(stages):  # every stage's sweep must load before anything runs
        if stage.kind in ("sweep", "narrow", "promote"):
            # each override labelled with where it was written, so a problem names that place
            labelled = ([(f"{file} set", s) for s in common] + [("--set", s) for s in overrides]
                        + [(f"{file} stages[{i}].set", s) for s in stage.set])
            try:
                load_checked_sweep(sweep_path, labelled)
            except ConfigError as err:
                problems += [Problem(p.file, p.key, f"{p.message} (stage {stage.name})") for p in err.problems]
    if problems:
        raise ConfigError(problems)
    return pipeline


def _stages(raw, file: str, problems: list[Problem]) -> list[Stage]:
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(file, "stages", "required: a non-empty list of stages"))
        return []
    stages, names, seen_sweep = [], set(), False
    for i, item in enumerate(raw):
        key = f"stages[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(file, key, f"expected a mapping with name and kind, got {item!r}"))
            continue
        kind = item.get("kind")
        if kind not in KINDS:
            problems.append(Problem(file, f"{key}.kind", f"unknown kind {kind!r}; valid: {', '.join(KINDS)}"))
            continue
        for k in item:
            if k not in KINDS[kind]:
                problems.append(Problem(file, f"{key}.{k}", f"unknown key for a {kind} stage; valid: "
                                        f"{', '.join(sorted(KINDS[kind]))}"))
        name = item.get("name", kind)
        if not isinstance(name, str) or not NAME_RE.match(name) or name in names:
            problems.append(Problem(file, f"{key}.name", f"must be a unique simple name, got {name!r}"))
        names.add(name)
        if kind in ("narrow", "recheck", "promote") and not seen_sweep:
            problems.append(Problem(file, f"{key}.kind", f"a {kind} stage needs a sweep or narrow stage before it"))
        seen_sweep |= kind in ("sweep", "narrow")
        stage = Stage(name=name, kind=kind)
        if "set" in item:
            if not isinstance(item["set"], list) or not all(isinstance(s, str) for s in item["set"]):
                problems.append(Problem(file, f"{key}.set", "expected a list of 'key.path=value' strings"))
            else:
                stage.set = list(item["set"])
        for k, lo in (("top_k", 1), ("seeds", 1)):
            if k in item:
                _int(item[k], problems, file, f"{key}.{k}", lo)
                setattr(stage, k, item[k])
        if "margin" in item:
            m = item["margin"]
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 1:
                problems.append(Problem(file, f"{key}.margin", f"expected a number in [0, 1], got {m!r}"))
            else:
                stage.margin = float(m)
        stages.append(stage)
    if stages and not any(s.kind in ("sweep", "narrow") for s in stages):
        problems.append(Problem(file, "stages", "needs at least one sweep stage"))
    return stages
