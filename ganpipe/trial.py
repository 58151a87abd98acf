"""`ganpipe trial`: one trial in this process, no Ray: the debugging path.

Search entries take their first choice / midpoint unless `--set`; the output folder
gets the resolved config, a sample PNG and a metrics line per evaluation, the last
checkpoint and a final `result.json`.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ganpipe.config import ConfigError, Problem, first_values, resolve_trial
from ganpipe.preflight import data_problems_as_config_errors, load_checked_sweep
from ganpipe.config.schema import SweepConfig, TrialConfig
from ganpipe.train.reporter import EvalReport, TrialResult
from ganpipe.train.threads import set_threads
from ganpipe.tune.interrupt import ctrl_c_deferred
from ganpipe.metrics.names import SUMMARY
from ganpipe.objective import OBJECTIVE, describe
from ganpipe.viz import save_samples_png

TABLE_KEYS = (*SUMMARY, "coverage", "loss_d", "loss_g", "steps_per_sec")


def format_metrics(step: int, metrics: dict[str, float]) -> str:
    cells = [f"step {step:>7d}"] + [f"{k} {metrics[k]:.4g}" for k in TABLE_KEYS if k in metrics]
    return " | ".join(cells)


class FolderReporter:
    """Writes what a person debugging a trial wants to look at, and prints a metrics row."""

    def __init__(self, out: Path, progress: tqdm | None = None):
        self.out, self.progress = out, progress
        self.metrics_file = out / "metrics.jsonl"
        # of the last evaluation written to metrics.jsonl, for a result.json after Ctrl-C
        self.last_metrics: dict[str, float] = {}
        self.best: dict[str, float] = {}

    def on_eval(self, report: EvalReport, trainer) -> None:
        # the row and the last/best a result.json after Ctrl-C reports: all or none of them
        with ctrl_c_deferred():
            with self.metrics_file.open("a") as f:
                f.write(json.dumps({"step": report.step, **report.metrics}) + "\n")
            self.last_metrics, self.best = report.metrics, dict(trainer.best)
        save_samples_png(report.samples, self.out / "samples" / f"step-{report.step:07d}.png", f"step {report.step}",
                         ncol=trainer.grid_columns, modes=trainer.sample_modes)
        trainer.save_checkpoint(self.out / "checkpoint.pt")
        (tqdm.write if self.progress is not None else print)(format_metrics(report.step, report.metrics))

    def on_end(self, result: TrialResult, trainer) -> None:
        pass


def prepare_trial(sweep_path: str, overrides: list[str]) -> tuple[SweepConfig, TrialConfig, dict]:
    """Load and validate; raise ConfigError before anything is written."""
    sweep = load_checked_sweep(sweep_path, overrides, single_trial=True)
    values = first_values(sweep.space, sweep.trial)
    return sweep, resolve_trial(sweep, values), values


def choose_out_dir(out: str | None, name: str) -> Path:
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"trial-{name}-{stamp}"
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError([Problem("--out", "out", f"{path} is a file, not a folder; choose a new folder")])
    if path.exists() and any(path.iterdir()):
        raise ConfigError([Problem("--out", "out", f"{path} exists and is not empty; choose a new folder")])
    return path


def write_config(path: Path, cfg: TrialConfig) -> None:
    """The output folder with the resolved config in it: the trial's first write, so a folder it cannot write
    is still bad input."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    except OSError as e:
        raise ConfigError([Problem("--out", "out", f"cannot write to {path}: {e.strerror or e}")]) from None


def run_trial(sweep_path: str, overrides: list[str], out: str | None, threads: int | None = None) -> TrialResult:
    from ganpipe.train import make_trainer  # heavy imports after validation

    sweep, cfg, values = prepare_trial(sweep_path, overrides)
    out_dir = choose_out_dir(out, sweep.name)
    set_threads(threads or max(1, int(sweep.resources.cpu)))
    device = "cuda" if sweep.resources.gpu > 0 and torch.cuda.is_available() else "cpu"
    if sweep.resources.gpu > 0 and device == "cpu":
        print(f"note: resources.gpu is {sweep.resources.gpu:g} but torch sees no CUDA device: training on the CPU",
              file=sys.stderr)
    start = time.perf_counter()
    # reads the data and the evaluation's feature network: data that cannot be read is bad input, refused
    # before the output folder exists
    with data_problems_as_config_errors(sweep.source or sweep_path):
        trainer = make_trainer(cfg, device=device, objectives=sweep.search.objectives)
    write_config(out_dir, cfg)
    print(f"trial {sweep.name}: {cfg.data.dataset}, {cfg.model.architecture}, {cfg.loss.name}, {cfg.optimizer.name}")
    if values:
        print("search entries at: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    print(f"output: {out_dir}")

    def write_result(status: str, message: str, step: int, metrics: dict, best: dict) -> dict:
        summary = {"status": status, "message": message, "step": step, "wall_seconds": time.perf_counter() - start,
                   "metrics": metrics, "best": best, "params": values, "protocol": trainer.evaluator.protocol}
        (out_dir / "result.json").write_text(json.dumps(summary, indent=2))
        return summary

    reporter = FolderReporter(out_dir)
    try:
        with tqdm(total=cfg.train.steps, unit="step", file=sys.stderr, mininterval=1.0) as bar:
            reporter.progress = bar
            result = trainer.train(reporter, progress=bar.update)
    except KeyboardInterrupt:  # what it got to, then Ctrl-C as usual (exit 130)
        write_result("interrupted", f"interrupted at step {trainer.step}", trainer.step, reporter.last_metrics,
                     reporter.best)
        print(f"interrupted at step {trainer.step}; results so far: {out_dir / 'result.json'}", file=sys.stderr)
        raise
    summary = write_result(result.status, result.message, result.step, result.metrics, result.best)
    if result.status == "diverged":
        print(f"DIVERGED: {result.message}")
    else:
        print(f"finished {result.step} step{'s' * (result.step != 1)} in {summary['wall_seconds']:.1f} s")
        for what, m in (("last", result.metrics), ("best", result.best)):
            modes = f", modes {m['modes']:.0f}/{trainer.evaluator.n_modes}" if "modes" in m else ""
            print(f"  {what} (step {m.get('step', result.step)}): objective {m[OBJECTIVE]:.4g}, fid {m['fid']:.4g}, "
                  f"diversity {m['diversity']:.3f}{modes}")
        print(f"  best = {describe(trainer.objectives)}")
    print(f"results: {out_dir / 'result.json'}")
    return result
