"""SIGTERM is taken as Ctrl-C: whatever SIGINT would do now, even where SIGINT is ignored."""
import signal

import pytest

from ganpipe.tune.interrupt import _as_ctrl_c, sigterm_as_ctrl_c


@pytest.fixture
def restore_handlers():
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def test_sigterm_runs_the_ctrl_c_handler_in_place(restore_handlers):
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))  # e.g. Tune's graceful stop in fit()
    sigterm_as_ctrl_c()
    signal.raise_signal(signal.SIGTERM)
    assert seen == [signal.SIGINT]


@pytest.mark.parametrize("sigint", [signal.SIG_IGN, signal.default_int_handler])
def test_sigterm_interrupts_where_sigint_is_ignored_or_default(restore_handlers, sigint):
    # a background job of a non-interactive shell starts with SIGINT ignored: SIGTERM must still stop it
    signal.signal(signal.SIGINT, sigint)
    with pytest.raises(KeyboardInterrupt):
        _as_ctrl_c(signal.SIGTERM, None)
