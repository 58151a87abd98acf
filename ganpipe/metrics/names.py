"""The names of what a trial reports at each evaluation, for code that handles them generically
(the sweep's results table, reconciling MLflow with Tune, the best_* metrics of a run).

Every task reports the base metrics of its protocol; class-conditional GANs add class metrics
(some per class), translators their own; the train loop adds LOOP_KEYS.
"""
from __future__ import annotations

BASE = ("fid", "kid", "diversity", "precision", "recall", "density", "coverage", "modes", "modes_covered", "kl",
        "kl_floor", "high_quality", "mode_tv")
CONDITIONAL = ("class_accuracy", "intra_fid")
PER_CLASS_PREFIXES = ("fid_class_", "coverage_class_")
TRANSLATION = ("content_kept", "cycle_error", "fid_source")
# objective: the sweep's objectives as one number (ganpipe.objective), which the loop adds to each evaluation
LOOP_KEYS = ("objective", "loss_d", "loss_g", "steps_per_sec", "eval_seconds", "threads")  # threads: sweeps only
# one line of a results table: the headline numbers of whichever task ran
SUMMARY = ("fid", "kid", "mode_tv", "diversity", "modes", "modes_covered", "high_quality", "kl", "class_accuracy",
           "intra_fid", "content_kept", "cycle_error")


def is_evaluation_metric(key: str) -> bool:
    """True for a metric of the evaluation protocol (any task), False for loop and Tune bookkeeping."""
    return key in BASE or key in CONDITIONAL or key in TRANSLATION or key.startswith(PER_CLASS_PREFIXES)


def is_reported(key: str) -> bool:
    """What a trial sends to MLflow at each evaluation: the protocol's metrics and the loop's."""
    return is_evaluation_metric(key) or key in LOOP_KEYS
