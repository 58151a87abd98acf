"""Sweep configuration: YAML -> typed, validated dataclasses, search space, overrides.

    from ganpipe.config import load_sweep, suggest, resolve_trial
    sweep = load_sweep("sweeps/quick.yaml", ["loss=hinge"])   # ConfigError lists every problem
    values = suggest(optuna_trial, sweep.space, sweep.trial)  # define-by-run
    cfg = resolve_trial(sweep, values)                         # a validated TrialConfig
"""
from ganpipe.config.errors import ConfigError, Problem
from ganpipe.config.load import load_sweep, resolve_trial, trial_from_dict, trial_to_dict
from ganpipe.config.schema import SweepConfig, TrialConfig
from ganpipe.config.space import Param, apply, describe, first_values, ordered, suggest

__all__ = [
    "ConfigError",
    "Param",
    "Problem",
    "SweepConfig",
    "TrialConfig",
    "apply",
    "describe",
    "first_values",
    "load_sweep",
    "ordered",
    "resolve_trial",
    "suggest",
    "trial_from_dict",
    "trial_to_dict",
]
