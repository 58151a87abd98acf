"""SIGTERM is taken as Ctrl-C: whatever SIGINT would do now, even where SIGINT is ignored."""
import signal

import pytest

from ganpipe.tune.interrupt import _as_ctrl_c, ctrl_c_deferred, sigterm_as_ctrl_c


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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_during_a_deferred_block_arrives_after_it_whole(restore_handlers, sig):
    # e.g. a metrics row and the best it makes: a result.json written on the Ctrl-C must agree with the rows
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sigterm_as_ctrl_c()
    done = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred():
            signal.raise_signal(sig)
            signal.raise_signal(sig)  # a second one in the block is the same request
            done.append("row and best")
    assert done == ["row and best"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back
    with ctrl_c_deferred():  # and without a Ctrl-C the block just runs
        done.append("again")
    assert done == ["row and best", "again"]
