"""The trainers, chosen by task; the loop itself lives in ganpipe.train.loop.

    trainer = make_trainer(cfg, device)                        # Trainer, or TranslationTrainer (CycleGAN)
    trainer = trainer_from_checkpoint(path, device, steps)     # the same class, resumed

Imports stay inside the functions: `ganpipe.train.reporter` or `.threads` are cheap to import
(the CLI does before validating), and must not pull in the loop through this package.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from ganpipe.config.schema import TrialConfig
    from ganpipe.train.loop import Trainer


def make_trainer(cfg: TrialConfig, device: str = "cpu", objectives: list[str] | None = None) -> Trainer:
    """The trainer for a config's task: a TranslationTrainer (CycleGAN) for translation datasets.
    objectives: what makes an evaluation the trial's best (a sweep's search.objectives; None = the default)."""
    from ganpipe.data.registry import TRANSLATION_DATASETS

    if cfg.data.dataset in TRANSLATION_DATASETS:
        from ganpipe.train.translate import TranslationTrainer

        return TranslationTrainer(cfg, device, objectives)
    from ganpipe.train.loop import Trainer

    return Trainer(cfg, device, objectives)


def trainer_from_checkpoint(path: str | Path, device: str = "cpu", steps: int | None = None,
                            objectives: list[str] | None = None) -> Trainer:
    """Resume the trainer of a checkpoint (of its task's class); `steps` may extend the budget
    (e.g. a promotion re-check)."""
    from ganpipe.train.checkpoint import load_checkpoint

    cfg, state = load_checkpoint(path)
    if steps is not None:
        cfg.train.steps = steps
    trainer = make_trainer(cfg, device, objectives)
    trainer.load_state_dict(state)
    return trainer
