"""How the train loop talks to the outside world (console, Ray Tune, tests) without importing it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from ganpipe.config.schema import TrialConfig


@dataclass
class EvalReport:
    """One evaluation: `metrics` holds fid, diversity, mode figures, the sweep's `objective`
    (ganpipe.objective), mean losses, steps/s."""

    step: int
    metrics: dict[str, float]
    samples: torch.Tensor | None  # the generated evaluation samples (N, *shape), fixed z; None: no PNG


@dataclass
class TrialResult:
    status: str  # "finished" or "diverged"
    step: int  # last G step trained
    metrics: dict[str, float] = field(default_factory=dict)  # at the last evaluation
    best: dict[str, float] = field(default_factory=dict)  # at the evaluation with the lowest objective
    message: str = ""


class TrainerView(Protocol):
    """What a reporter may ask of the trainer it is told about (ganpipe.train.loop.Trainer, not imported:
    the loop imports this module)."""

    cfg: TrialConfig
    step: int
    grid_columns: int | None  # columns of a sample PNG
    sample_modes: tuple[torch.Tensor, float] | None  # (centres, std) of 2-D data's true modes, for a scatter PNG

    def save_checkpoint(self, path) -> object:
        """Write a resumable checkpoint to `path` (a file, or a folder for the file inside); return the file."""


class Reporter(Protocol):
    def on_eval(self, report: EvalReport, trainer: TrainerView) -> None:
        """Called after every evaluation; `trainer.save_checkpoint(path)` writes a resumable checkpoint."""

    def on_end(self, result: TrialResult, trainer: TrainerView) -> None:
        """Called once when training stops (finished or diverged)."""


class NullReporter:
    def on_eval(self, report, trainer):
        pass

    def on_end(self, result, trainer):
        pass


class ListReporter(NullReporter):
    """Keeps every report in memory (tests, notebooks)."""

    def __init__(self):
        self.reports: list[EvalReport] = []
        self.result: TrialResult | None = None

    def on_eval(self, report, trainer):
        self.reports.append(report)

    def on_end(self, result, trainer):
        self.result = result
