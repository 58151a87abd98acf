"""The sweep as the live view sees it (ganpipe.tune.live): trials' snapshots in, event lines, counts, the
best so far, G steps and their rate out. Pure: plain snapshots, no Ray and no terminal, which is what the
tests feed it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ganpipe.objective import BEST_OBJECTIVE, OBJECTIVE

RECENT = 3  # events kept in the view
RATE_WINDOW = 60.0  # seconds of G steps behind the step rate (and so the ETA)
EXTRAS = ("diversity", "modes")  # shown beside the objectives when the best evaluation reported them
ENDED = ("TERMINATED", "ERROR")


# -- the sweep as the view sees it ------------------------------------------------------------------------

@dataclass(frozen=True)
class Snap:
    """One trial at one moment, as Tune reports it (status one of Tune's: PENDING, RUNNING, PAUSED,
    TERMINATED, ERROR)."""
    trial_id: str
    status: str
    steps: int  # its budget of G steps (train.steps)
    result: Mapping = field(default_factory=dict)  # its last report ({} before the first)
    params: Mapping = field(default_factory=dict)  # what the searcher sampled (dotted keys)
    failures: int = 0
    error: str = ""  # the last line of its error, once it failed

    @property
    def step(self) -> int:
        return int(self.result.get("step", 0) or 0)


@dataclass
class Best:
    value: float
    trial_id: str
    step: int
    values: dict  # objective (and extra) metrics of that evaluation


@dataclass
class SweepState:
    """Counts, the best so far, G steps and their rate; `update` turns snapshots into event lines."""
    name: str
    objectives: list[str]
    num_samples: int
    steps: int  # a trial's budget before it exists (the largest, if train.steps is searched)
    scheduler: str = "ASHA"  # who stops trials early ("" for none: then only an interruption does)
    max_failures: int = 0
    start: float = 0.0
    trials: dict = field(default_factory=dict)  # trial_id -> its last Snap
    started: list = field(default_factory=list)  # trial ids in the order they first ran
    best: Best | None = None
    recent: list = field(default_factory=list)  # the last RECENT events (for the view)
    points: list = field(default_factory=list)  # (time, total G steps) whenever the total changed

    def update(self, snaps: list[Snap], now: float) -> list[str]:
        """Take the trials as they are now; returns the events since the last call, as lines."""
        events = []
        first = not self.trials
        if first:
            ended = [s for s in snaps if s.status in ENDED]
            if ended:  # a resumed sweep: what ended before is counted, not announced again
                events.append(f"resumed: {len(ended)} of {self.num_samples} trials had ended")
                for s in ended:
                    self.trials[s.trial_id] = s
                    self.started.append(s.trial_id)
                    self._consider_best(s)
        for s in snaps:
            before = self.trials.get(s.trial_id)
            if before is s or (before is not None and before.status in ENDED and before == s):
                continue
            self.trials[s.trial_id] = s
            events += self._events(before, s)
        total = self.total_steps
        if not self.points or self.points[-1][1] != total:
            self.points.append((now, total))
        stamp = clock(now - self.start)
        lines = [f"[{stamp}] {e}" for e in events]
        self.recent = (self.recent + lines)[-RECENT:]
        return lines

    def _events(self, before: Snap | None, s: Snap) -> list[str]:
        t = f"trial {s.trial_id}"
        out = []
        if s.status in ("RUNNING", *ENDED) and s.trial_id not in self.started:
            self.started.append(s.trial_id)
            params = " ".join(f"{k}={v}" for k, v in short_params(s.params).items())
            out.append(f"{t} started ({len(self.started)}/{self.num_samples})" + (f": {params}" if params else ""))
        if before is not None and s.failures > before.failures and s.status != "ERROR":
            limit = f" of {self.max_failures}" if self.max_failures > 0 else ""
            out.append(f"{t} errored (failure {s.failures}{limit}), retried from its last checkpoint"
                       + (f": {s.error}" if s.error else ""))
        if (before is None or s.result is not before.result) and self._consider_best(s):
            b = self.best
            out.append(f"{t} new best at step {b.step:,}: {values_text(b.values)}")
        if s.status in ENDED and (before is None or before.status not in ENDED):
            if s.status == "ERROR":
                out.append(f"{t} failed at step {s.step:,}: {s.error or 'see the table below'}")
            elif s.step >= s.steps:
                out.append(f"{t} finished: {s.steps:,} steps, best {self._trial_best(s)}")
            else:
                out.append(f"{t} {self._early} at step {s.step:,} of {s.steps:,}, "
                           f"best {self._trial_best(s)}")
        return out

    def _consider_best(self, s: Snap) -> bool:
        value = s.result.get(BEST_OBJECTIVE)
        if value is None or not math.isfinite(value) or (self.best and value >= self.best.value):
            return False
        if s.result.get(OBJECTIVE) == value:  # this very evaluation is the trial's best: all its metrics
            values = {k: s.result[k] for k in [*self.objectives, *EXTRAS] if k in s.result}
        else:  # an earlier one (a report Tune handed over in the same step): what the trial carries of it
            values = {o: s.result[f"best_{o}"] for o in self.objectives if f"best_{o}" in s.result}
        if len(self.objectives) > 1:
            values = {"objective": value, **values}
        self.best = Best(float(value), s.trial_id, s.step, values)
        return True

    def _trial_best(self, s: Snap) -> str:
        if len(self.objectives) == 1:
            o = self.objectives[0]
            return f"{o} {fmt(s.result.get('best_' + o, math.nan))}"
        return f"objective {fmt(s.result.get(BEST_OBJECTIVE, math.nan))}"

    # -- figures for the view and the summary
    @property
    def _early(self) -> str:
        return f"stopped by {self.scheduler}" if self.scheduler else "stopped early"

    def counts(self) -> dict[str, int]:
        early = self._early
        c = {"running": 0, "done": 0, early: 0, "failed": 0, "pending": 0}
        for s in self.trials.values():
            if s.status == "RUNNING":
                c["running"] += 1
            elif s.status == "ERROR":
                c["failed"] += 1
            elif s.status == "TERMINATED":
                c["done" if s.step >= s.steps else early] += 1
            else:
                c["pending"] += 1
        c["pending"] += max(self.num_samples - len(self.trials), 0)  # not created by the searcher yet
        return c

    @property
    def total_steps(self) -> int:
        return sum(s.step for s in self.trials.values())

    @property
    def budget(self) -> int:
        return sum(s.steps for s in self.trials.values()) + self.steps * max(self.num_samples - len(self.trials), 0)

    @property
    def remaining(self) -> int:
        """G steps still to train if no trial is stopped early from now on."""
        left = sum(max(s.steps - s.step, 0) for s in self.trials.values() if s.status not in ENDED)
        return left + self.steps * max(self.num_samples - len(self.trials), 0)

    def rate(self) -> float | None:
        """G steps per second over the last RATE_WINDOW seconds of reports."""
        if len(self.points) < 2:
            return None
        last = self.points[-1]
        base = next((p for p in reversed(self.points[:-1]) if p[0] <= last[0] - RATE_WINDOW), self.points[0])
        self.points = self.points[self.points.index(base):]
        return (last[1] - base[1]) / (last[0] - base[0]) if last[0] > base[0] else None


def short_params(params: Mapping) -> dict:
    """Sampled values by their last key (a section's main key by the section: loss.name -> loss), floats to
    3 significant digits; the full path where two would read the same."""
    def leaf(path: str) -> str:
        parts = path.split(".")
        return parts[0] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    names = [leaf(k) for k in params]
    return {(leaf(k) if names.count(leaf(k)) == 1 else k): (f"{v:.3g}" if isinstance(v, float) else v)
            for k, v in params.items()}


def fmt(value) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return f"{int(value)}"
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"


def values_text(values: Mapping) -> str:
    return ", ".join(f"{k} {fmt(v)}" for k, v in values.items())


def clock(seconds: float) -> str:
    s = max(int(seconds), 0)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def duration(seconds: float) -> str:
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
