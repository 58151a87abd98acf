"""Did Tune stop because of Ctrl-C? Its result does not say.

On the first SIGINT (or SIGUSR1) Tune ends its loop gracefully, saves the experiment with the trials
still RUNNING (so `Tuner.restore` continues them), then stops those trials and hands back every one
as TERMINATED, exactly like trials that finished. Counting finished trials therefore mistakes a
Ctrl-C during a sweep's last trials for the sweep's end. The one trace Tune leaves is that its
handler puts back the SIGINT handler it replaced (ray.tune.tune._setup_signal_catching), so a marker
handler is installed before `fit()`: if the marker is back in place afterwards, Tune was interrupted.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading


class TuneInterrupt:
    """`with TuneInterrupt() as watch: tuner.fit()`; then `watch.happened` is True after a Ctrl-C."""

    def __init__(self, enabled: bool = True):
        # Tune installs its handler only in the main thread, unless told not to; and under Ray Client its
        # loop runs on the head, not here. Elsewhere the marker would be found in place after any run.
        self.enabled = (enabled and threading.current_thread() is threading.main_thread()
                        and not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0")))
        self.happened = False

    def _marker(self, sig, frame):  # a second Ctrl-C, after Tune's own: stop at once, as Python would
        raise KeyboardInterrupt

    def __enter__(self) -> "TuneInterrupt":
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._marker)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.happened = signal.getsignal(signal.SIGINT) == self._marker
            signal.signal(signal.SIGINT, self._previous)  # Tune's handler, if left, would swallow a later Ctrl-C


def sigterm_as_ctrl_c() -> None:
    """`kill` and batch schedulers send SIGTERM, whose default ends Python at once (Ray's own handler, installed
    by ray.init, aborts) and leaves MLflow runs RUNNING: take it as a Ctrl-C instead (Tune's graceful stop,
    runs KILLED, resumable; a second one forces). Main thread only, as every Python signal handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_ctrl_c)


def _as_ctrl_c(signum, frame) -> None:
    """Whatever Ctrl-C would do now (Tune's graceful stop inside fit, else Python's KeyboardInterrupt); a
    KeyboardInterrupt also where SIGINT is ignored (a background job of a non-interactive shell)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIG_IGN or SIG_DFL
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


@contextlib.contextmanager
def ctrl_c_deferred():
    """Hold a Ctrl-C (SIGINT, or SIGTERM taken as one) until the block is done, then deliver it: for the few
    lines that must happen together, e.g. a metrics row and the best it makes (a result.json written after
    the Ctrl-C then agrees with the rows). Main thread only; elsewhere the block simply runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    previous: dict = {}
    try:  # installed inside: a Ctrl-C between the two swaps still finds the first one put back
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda s, f: caught.append((s, f)))
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if caught:  # the first only: a second Ctrl-C during the block was the same request
            sig, frame = caught[0]
            handler = previous[sig]
            if callable(handler):
                handler(sig, frame)
            elif handler == signal.SIG_DFL and sig == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)
