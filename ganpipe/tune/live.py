"""What a sweep prints while it runs: a live view on a terminal, one line per event elsewhere, Tune's full
table once at the end.

Tune's CLIReporter prints its whole status table again every `max_report_frequency` seconds, so a laptop
sweep printed thousands of lines, most of them the same. SweepProgress is a tune.ProgressReporter, the hook
Tune's loop calls after each of its steps on the driver (`should_report`, then `report`), so one object sees
every trial's state and every result; a tune.Callback would see the same events but runs on the head node
under Ray Client, where nothing reaches the user's terminal, while a reporter's output is queued back to
the driver (RemoteReporterMixin). Tune itself prints nothing else at `verbose=1` (its per-result lines
start at 2), and its warnings and errors still come through its loggers.

- stdout a terminal (and no $CI, TERM not dumb): a view of at most 6 lines that is redrawn in place
  (cursor up, clear to the end of the screen), at most once a second or when something happens. Anything
  else written meanwhile (a trial's log lines that Ray forwards with log_to_driver, a warning) goes above
  it: `output_guard` routes sys.stdout, sys.stderr and the logging handlers that write to them through
  the view, which erases itself first and comes back on its next redraw.
- otherwise (CI, a pipe, a file): one line per event: a trial started, a new best so far, a trial stopped
  early by the scheduler, finished, failed (with its reason) or retried.
- at the end, in both: one summary line and Tune's full table (`table`, the sweep's ResultsReporter).

The pure parts (SweepState.update in live_state.py, render, redraw) take plain snapshots, which is what the tests
feed them.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from typing import NamedTuple

from ray import tune
from ray.tune.progress_reporter import RemoteReporterMixin

from ganpipe.objective import describe
from ganpipe.tune.live_state import Snap, SweepState, clock, duration, values_text

MAX_WIDTH = 120  # the view never needs more; a wider terminal gets the same lines
TICK = 1.0  # seconds between redraws when nothing happens (elapsed time, rate, ETA)
# seconds between looks at every trial: Tune asks after each step of its loop (about twice per result), and a
# look is O(trials); at 300 trials looking every step cost 1.2 ms per result under cProfile (docs/benchmarks.md
# section 8b). Events that fall between two looks still come out (a trial's report carries its best so far).
LOOK_EVERY = 0.5


# -- the terminal view (pure) -----------------------------------------------------------------------------

def render(state: SweepState, now: float, width: int = MAX_WIDTH) -> list[str]:
    """The view: at most 3 + RECENT lines, none wider than `width` (capped at MAX_WIDTH) minus one (a full
    line would wrap on some terminals, and a wrapped line would throw off the redraw's cursor count)."""
    c = state.counts()
    lines = [f"sweep {state.name}  {clock(now - state.start)}  trials of {state.num_samples}: "
             + ", ".join(f"{n} {k}" for k, n in c.items())]
    if state.best:
        b = state.best
        lines.append(f"best: trial {b.trial_id} at step {b.step:,}: {values_text(b.values)}")
    else:
        lines.append(f"best: none yet (by {describe(state.objectives)})")
    done, budget = state.total_steps, max(state.budget, 1)
    filled = min(round(20 * done / budget), 20)
    cut = budget - done - state.remaining  # skipped by early stopping (and failures)
    rate = state.rate()
    line = f"G steps [{'#' * filled}{'.' * (20 - filled)}] {done:,} / {budget:,}"
    if cut > 0:
        line += f" ({cut:,} skipped: stopped early or failed)"
    if rate:
        line += f"  {rate:,.0f}/s  ETA {duration(state.remaining / rate)}"
    lines.append(line)
    lines += [f"  {e}" for e in state.recent]
    room = max(min(width, MAX_WIDTH) - 1, 20)
    return [ln if len(ln) <= room else ln[: room - 3] + "..." for ln in lines]


def redraw(lines: list[str], height: int) -> str:
    """What rewrites a view of `height` lines, the cursor below it, as `lines`: back to its first line,
    clear to the end of the screen, the new lines."""
    up = f"\r\x1b[{height}A" if height else "\r"
    return up + "\x1b[J" + "".join(f"{ln}\n" for ln in lines)


ERASE = "\x1b[J"


# -- the terminal itself ----------------------------------------------------------------------------------

class Terminal:
    """This process's stdout with the view at its bottom; `write_above` lets anything else through first."""

    def __init__(self, out):
        self.out, self.height, self.partial = out, 0, False
        self.lock = threading.RLock()

    def draw(self, lines: list[str]) -> None:
        with self.lock:
            if self.partial:  # someone else's line is half written; draw after it ends
                return
            self.out.write(redraw(lines, self.height))
            self.out.flush()
            self.height = len(lines)

    def erase(self) -> None:
        with self.lock:
            if self.height:
                self.out.write(f"\r\x1b[{self.height}A{ERASE}")
                self.out.flush()
                self.height = 0

    def write_above(self, stream, text: str) -> int:
        with self.lock:
            if text:
                self.erase()
                stream.flush()
                self.partial = not text.endswith("\n")
            return stream.write(text)

    @property
    def erased(self) -> bool:
        return self.height == 0


class _Above:
    """A stream whose writes go above the view (sys.stdout, sys.stderr and logging handlers, while a sweep
    runs on a terminal)."""

    def __init__(self, terminal: Terminal, stream):
        self._terminal, self._stream = terminal, stream

    def write(self, text: str) -> int:
        return self._terminal.write_above(self._stream, text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


_ACTIVE: Terminal | None = None  # the terminal of the running sweep's view (output_guard)


def on_terminal() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


@contextmanager
def output_guard():
    """While a sweep runs on a terminal: everything this process writes to stdout or stderr goes above the
    view (Ray prints its workers' log lines from a thread of the driver, through sys.stdout and sys.stderr).
    Output that bypasses Python (a C library writing to fd 2) can still land inside the view until its next
    redraw. Elsewhere it does nothing."""
    global _ACTIVE
    if _ACTIVE is not None or not on_terminal():
        yield
        return
    out, err = sys.stdout, sys.stderr
    terminal = Terminal(out)
    streams = {id(out): _Above(terminal, out)}
    if err.isatty():
        streams[id(err)] = _Above(terminal, err)
    handlers = [(h, h.stream) for h in _stream_handlers() if id(h.stream) in streams]  # they keep their own
    _ACTIVE = terminal
    sys.stdout = streams[id(out)]
    sys.stderr = streams.get(id(err), err)
    for h, stream in handlers:
        h.stream = streams[id(stream)]
    try:
        yield
    finally:
        for h, stream in handlers:
            h.stream = stream
        sys.stdout, sys.stderr = out, err
        terminal.erase()
        _ACTIVE = None


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


# -- Tune's side ------------------------------------------------------------------------------------------

class Frame(NamedTuple):
    """What one report shows: lines to print (events, or the end's summary and table) and the view (None
    when printing lines only)."""
    text: str
    view: list[str] | None


class SweepProgress(tune.ProgressReporter, RemoteReporterMixin):
    """The sweep's ProgressReporter (see the module's docstring). `table` prints Tune's full table at the end.

    Pickled with the Tuner (tuner.pkl) and restored with it by --resume, so it holds no lock or stream, and
    it decides between view and lines again when Tune sets it up, in the process that prints.
    """

    def __init__(self, table: tune.ProgressReporter, name: str, objectives: list[str], num_samples: int,
                 steps: int, scheduler: str = "ASHA", max_failures: int = 0):
        self.table = table
        self.state = SweepState(name, list(objectives), num_samples, steps, scheduler, max_failures)
        self.live = on_terminal()  # the driver's; kept under Ray Client, where Tune runs on the head node
        self._events: list[str] = []
        self._drawn = self._looked = 0.0

    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs):
        self.table.setup(start_time=start_time, total_samples=total_samples, metric=metric, mode=mode, **kwargs)
        self.state.start = start_time or time.time()
        if total_samples:
            self.state.num_samples = total_samples
        if self.output_queue is None:  # printing from this process (not through Ray Client's queue)
            self.live = on_terminal()

    def should_report(self, trials, done: bool = False) -> bool:
        now = time.time()
        if done or now - self.__dict__.get("_looked", 0.0) >= LOOK_EVERY:  # (a reporter pickled before it had one)
            self._events += self.state.update([self._snap(t) for t in trials], now)
            self._looked = now
        if done:
            return True
        if not self.live:
            return bool(self._events)
        return bool(self._events) or now - self._drawn >= TICK or bool(_ACTIVE and _ACTIVE.erased)

    def report(self, trials, done: bool, *sys_info: str) -> None:
        now = time.time()
        if done:  # (in lines: the events of the last look first)
            events = "" if self.live or not self._events else "\n".join(self._events) + "\n"
            frame = Frame(events + self.summary(now) + "\n" + self.table._progress_str(trials, True, *sys_info), None)
        elif self.live:
            frame = Frame("", render(self.state, now, terminal_width()))
        else:
            frame = Frame("\n".join(self._events), None)
        self._events, self._drawn = [], now
        if self.output_queue is not None:
            self.output_queue.put(frame)
        else:
            self.display(frame)

    def display(self, frame: Frame) -> None:
        """On the driver: draw the view, or print lines where it was."""
        terminal = _ACTIVE or self.__dict__.setdefault("_terminal", Terminal(sys.stdout))  # no output_guard
        if frame.view is not None:
            terminal.draw(frame.view)
            return
        terminal.erase()
        if frame.text:
            print(frame.text, flush=True)

    def summary(self, now: float) -> str:
        s = self.state
        counts = ", ".join(f"{n} {k}" for k, n in s.counts().items() if n)
        best = f"; best: trial {s.best.trial_id}, {values_text(s.best.values)}" if s.best else ""
        trials = f"{len(s.trials)} trial{'' if len(s.trials) == 1 else 's'}"
        return (f"sweep {s.name}: {trials} in {duration(now - s.start)} ({counts}), "
                f"{s.total_steps:,} G steps{best}")

    def _snap(self, trial) -> Snap:
        before = self.state.trials.get(trial.trial_id)
        # not trial.last_result: before a trial's first report that property ray.get()s its actor's default
        # metrics, which would hold up Tune's loop (this runs after every step) until the actor is up
        result = trial.run_metadata.last_result
        if (before is not None and before.status == trial.status and before.result is result
                and before.failures == trial.num_failures):
            return before  # unchanged: no copy, no file read
        steps = int(trial.config.get("train.steps", self.state.steps))
        error = ""
        if trial.num_failures and (before is None or before.failures != trial.num_failures):
            from ganpipe.tune.callbacks import _error_text

            error = _error_text(trial)
        elif before is not None:
            error = before.error
        return Snap(trial.trial_id, trial.status, steps, result, dict(trial.config), trial.num_failures, error)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_terminal", None)  # a lock and this process's stdout
        return state


def terminal_width() -> int:
    return min(shutil.get_terminal_size((MAX_WIDTH, 24)).columns, MAX_WIDTH)
