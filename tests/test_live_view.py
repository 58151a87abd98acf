"""What a sweep prints while it runs (ganpipe.tune.live): the view on a terminal, event lines in a pipe.

The renderer is a pure function of snapshots, tested here without Ray; the rest runs real tiny sweeps,
each as its own `ganpipe` process (which starts and shuts down its Ray), once through pipes and once on a
pseudo-terminal.
"""
from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time

import pytest

from ganpipe.tune.live import MAX_WIDTH, Snap, SweepState, Terminal, redraw, render
from test_sweep import ganpipe, write_sweep

CURSOR_UP = re.compile(r"\x1b\[(\d+)A")
STATUS = "== Status =="  # the head of Tune's table
VIEW_HEAD = re.compile(r"^sweep t-sweep  \d\d:\d\d:\d\d  trials of ")


def result(step: int, objective: float, best: float, **metrics) -> dict:
    return {"step": step, "objective": objective, "best_objective": best, "best_mode_tv": best,
            "mode_tv": objective, **metrics}


def busy_sweep() -> tuple[SweepState, float, list[str]]:
    """A sweep of 12 trials seen through every kind of event, the last at t=600 s; its events."""
    state = SweepState("quick", ["mode_tv"], 12, 16000, "ASHA", max_failures=2, start=0.0)
    params = {"loss.name": "hinge", "optimizer.lr_g": 0.0012345678, "optimizer.lr_d": 0.0008, "model.width": 128}
    events = state.update([Snap(f"t{i}", "PENDING", 16000, params=params) for i in range(4)], 1.0)
    events += state.update([Snap(f"t{i}", "RUNNING", 16000, params=params) for i in range(4)], 2.0)
    now = 2.0
    for step in (2000, 4000, 6000, 8000):  # trial i's mode_tv: 0.5 / (i + 1) at step 2000, then lower
        now += 100
        value = [0.5 / (i + 1) * 2000 / step for i in range(4)]
        events += state.update([Snap(f"t{i}", "RUNNING", 16000, result(step, value[i], value[i], diversity=0.875,
                                                                        modes=7), params) for i in range(4)], now)
    last = {f"t{i}": state.trials[f"t{i}"].result for i in range(4)}
    died, diverged = "RayActorError: node died", "TrialDiverged: nan at step 8000"
    events += state.update([Snap("t0", "TERMINATED", 16000, last["t0"], params),  # ASHA at step 8000
                            Snap("t1", "PENDING", 16000, last["t1"], params, failures=1, error=died),
                            Snap("t2", "ERROR", 16000, last["t2"], params, failures=3, error=diverged),
                            Snap("t3", "TERMINATED", 16000, result(16000, 0.01, 0.01, diversity=1.0, modes=8),
                                 params)], 600.0)
    return state, 600.0, events


def test_events_say_what_happened_once():
    state = SweepState("quick", ["mode_tv"], 2, 1000, "ASHA", start=0.0)
    assert state.update([Snap("a", "PENDING", 1000), Snap("b", "PENDING", 1000)], 1) == []
    started = state.update([Snap("a", "RUNNING", 1000, params={"loss.name": "ns", "optimizer.lr_g": 1.23456e-3}),
                            Snap("b", "RUNNING", 1000)], 5)
    assert started == ["[00:00:05] trial a started (1/2): loss=ns lr_g=0.00123", "[00:00:05] trial b started (2/2)"]
    better = state.update([Snap("a", "RUNNING", 1000, result(500, 0.4, 0.4, diversity=0.75, modes=6)),
                           Snap("b", "RUNNING", 1000, result(500, 0.6, 0.6))], 70)
    # only an improvement of the best so far is an event; b's first evaluation is worse than a's
    assert better == ["[00:01:10] trial a new best at step 500: mode_tv 0.4, diversity 0.75, modes 6"]
    same = state.trials["a"]
    assert state.update([same, state.trials["b"]], 71) == []  # nothing changed, nothing said
    ended = state.update([Snap("a", "TERMINATED", 1000, result(1000, 0.5, 0.4)),
                          Snap("b", "TERMINATED", 1000, result(500, 0.6, 0.6))], 90)
    assert ended == ["[00:01:30] trial a finished: 1,000 steps, best mode_tv 0.4",
                     "[00:01:30] trial b stopped by ASHA at step 500 of 1,000, best mode_tv 0.6"]
    assert state.counts() == {"running": 0, "done": 1, "stopped by ASHA": 1, "failed": 0, "pending": 0}
    assert state.update([Snap("a", "TERMINATED", 1000, result(1000, 0.5, 0.4))], 95) == []  # ended is ended


def test_failures_retries_and_a_resumed_sweep():
    state, _, lines = busy_sweep()
    events = "\n".join(lines)
    assert "trial t0 stopped by ASHA at step 8,000 of 16,000, best mode_tv 0.125" in events
    assert "trial t3 finished: 16,000 steps, best mode_tv 0.01" in events
    assert sum(" started " in line for line in lines) == 4 and state.recent == lines[-3:]
    assert "trial t1 errored (failure 1 of 2), retried from its last checkpoint: RayActorError: node died" in events
    assert "trial t2 failed at step 8,000: TrialDiverged: nan at step 8000" in events
    assert "trial t3 new best at step 16,000: mode_tv 0.01, diversity 1, modes 8" in events
    assert state.counts() == {"running": 0, "done": 1, "stopped by ASHA": 1, "failed": 1, "pending": 9}

    resumed = SweepState("quick", ["mode_tv"], 12, 16000, start=0.0)
    lines = resumed.update(list(state.trials.values()), 3.0)
    assert lines == ["[00:00:03] resumed: 3 of 12 trials had ended"]  # not 3 "finished" lines again
    assert resumed.best.trial_id == "t3"


def test_two_objectives_show_the_scalar_and_both_metrics():
    state = SweepState("s", ["fid", "diversity"], 1, 100, start=0.0)
    *_, line = state.update([Snap("a", "RUNNING", 100, {"step": 50, "objective": 0.1201, "best_objective": 0.1201,
                                                        "fid": 3.21, "diversity": 0.88, "modes": 7})], 1)
    assert line.endswith("new best at step 50: objective 0.1201, fid 3.21, diversity 0.88, modes 7")


@pytest.mark.parametrize("width", [40, 80, 120, 250])
def test_the_view_fits_one_screen_and_its_width(width):
    state, now, _ = busy_sweep()
    lines = render(state, now, width)
    assert 3 <= len(lines) <= 6
    assert all(len(line) < min(width, MAX_WIDTH) for line in lines)  # one column spare: no autowrap
    if width >= 120:
        assert lines[0] == ("sweep quick  00:10:00  trials of 12: 0 running, 1 done, 1 stopped by ASHA, 1 failed, "
                            "9 pending")
        assert lines[1] == "best: trial t3 at step 16,000: mode_tv 0.01, diversity 1, modes 8"
        # 3 x 8,000 + 16,000 trained of 12 x 16,000; t0 (ASHA) and t2 (failed) will not train their other 8,000 each
        assert lines[2].startswith("G steps [####................] 40,000 / 192,000 (16,000 skipped: ")
        # the rate: the 8,000 steps reported since t=402 s (the last report 60 s or more before the newest);
        # left: t1's 8,000 and 8 trials not created yet, 136,000 steps at 40.4/s
        assert lines[2].endswith("  40/s  ETA 56m06s")


def test_no_rate_and_no_best_before_the_first_evaluation():
    state = SweepState("quick", ["mode_tv"], 8, 16000, start=0.0)
    state.update([Snap("a", "RUNNING", 16000)], 3)
    lines = render(state, 4)
    assert lines[1] == "best: none yet (by mode_tv (min))"
    assert "ETA" not in lines[2] and "0 / 128,000" in lines[2]


def test_redraw_rewrites_in_place():
    assert redraw(["a", "b"], 0) == "\r\x1b[Ja\nb\n"
    assert redraw(["a", "b", "c"], 2) == "\r\x1b[2A\x1b[Ja\nb\nc\n"  # up over the 2 lines drawn before


def test_a_terminal_keeps_the_view_below_what_others_print():
    out = io.StringIO()
    term = Terminal(out)
    term.draw(["view 1", "line 2"])
    term.draw(["view 2", "line 2", "line 3"])
    term.write_above(out, "(train_trial pid=1) a warning")  # print() writes the text, then the newline
    term.draw(["never drawn inside someone's line"])
    term.write_above(out, "\n")
    term.draw(["view 3"])
    assert screen(out.getvalue()) == ["(train_trial pid=1) a warning", "view 3"]
    assert CURSOR_UP.findall(out.getvalue()) == ["2", "3"]  # up over the view each time, never more


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after `raw`: enough of VT100 for the view (\\r, \\n, cursor up, erase to the
    end of the screen or line); colours and other sequences are dropped."""
    rows, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+|\x1b", raw):
        if token == "\n":
            row, col = row + 1, 0  # a pty turns \n into \r\n
            rows += [""] * (row + 1 - len(rows))
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            n = int(token[2:-1] or 1) if token[2:-1].isdigit() else 1
            if token.endswith("A"):
                row = max(row - n, 0)
            elif token.endswith("J"):
                rows = rows[: row + 1]
                rows[row] = rows[row][:col]
            elif token.endswith("K"):
                rows[row] = rows[row][:col]
        elif token != "\x1b":
            line = rows[row]
            rows[row] = line[:col].ljust(col) + token + line[col + len(token):]
            col += len(token)
    return rows[:-1] if rows and rows[-1] == "" else rows


# -- real sweeps ----------------------------------------------------------------------------------------

def event_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^\[\d\d:\d\d:\d\d\] ", line)]


@pytest.mark.integration
@pytest.mark.slow
def test_a_sweep_in_a_pipe_prints_a_line_per_event_and_the_table_once(tmp_path):
    proc = ganpipe(tmp_path, "sweep", str(write_sweep(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "\x1b[" not in out  # no cursor moves in a pipe
    assert out.count(STATUS) == 1 and out.count("| Trial name") == 1  # Tune's table once, at the end
    events = event_lines(out)
    ids = {m.group(1) for line in events for m in [re.search(r"trial (\w+) started \(\d/6\)", line)] if m}
    assert len(ids) == 6
    for trial in ids:  # each trial started once and ended once
        mine = [line for line in events if f"trial {trial} " in line]
        assert sum(" started " in line for line in mine) == 1
        assert sum(" finished: " in line or " stopped by ASHA at step " in line for line in mine) == 1
    assert any(" stopped by ASHA at step " in line for line in events)  # this sweep's ASHA always stops some
    bests = [float(re.search(r"mode_tv ([0-9.]+)", line).group(1)) for line in events if " new best " in line]
    assert bests and bests == sorted(bests, reverse=True) and len(set(bests)) == len(bests)  # improvements only
    # the summary, then the table, then the ranked results and the rest of the end, each once
    order = [out.index(s) for s in ("sweep t-sweep: 6 trials in ", STATUS, "ranked trials", "sweep finished in")]
    assert order == sorted(order)
    # Measured: 52 lines on stdout, 15 of them events (Tune's table every 15 s made it 84 before, and that
    # count grows with the sweep's length). Events: 2 per trial and at most one new best per evaluation
    # (3 per trial here), so at most 30; the rest (the table, the ranked table, the end) took 37.
    assert len(events) <= 30 and len(out.splitlines()) <= 70, out


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_trial_says_why_and_its_retry_is_a_line(tmp_path):
    sweep = write_sweep(tmp_path, optimizer={"lr_g": 1e12, "lr_d": 1e12}, loss="lsgan",  # diverges at once
                        search={"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}},
                        failure={"max_failures": 1})
    proc = ganpipe(tmp_path, "sweep", str(sweep))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = event_lines(proc.stdout)
    reason = "TrialDiverged: diverged at step "
    assert [e.split("] ", 1)[1].split(" ")[2] for e in events] == ["started", "errored", "failed"], events
    assert "(failure 1 of 1), retried from its last checkpoint: " in events[1] and reason in events[1]
    assert reason in events[2]
    assert "sweep t-sweep: 1 trial in " in proc.stdout and "(1 failed), 0 G steps" in proc.stdout
    assert proc.stdout.count(STATUS) == 1 and "Number of errored trials: 1" in proc.stdout
    assert "Trial task failed for trial" in proc.stderr  # Tune's own error, with its traceback, still shown


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_a_sweep_on_a_terminal_redraws_its_view_in_place(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # 40 rows, 100 columns
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm"}  # CI would mean event lines
    sweep = write_sweep(tmp_path, search__num_samples=4)
    proc = subprocess.Popen([sys.executable, "-m", "ganpipe.cli", "sweep", str(sweep), "--num-cpus", "2"],
                            cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    raw = bytearray()
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                raw += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    out = raw.decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    shown = screen(out)
    # the view was drawn many times (once a second at least) ...
    assert len([m for m in re.finditer(r"sweep t-sweep  \d\d:\d\d:\d\d  trials of 4: ", out)]) >= 5
    assert CURSOR_UP.search(out)
    # ... yet the screen holds none of it at the end: every drawing replaced the one before, and the last was
    # erased for the end's summary and table, each on the screen once
    assert not [line for line in shown if VIEW_HEAD.match(line)], "\n".join(shown)
    assert sum(line.startswith("sweep t-sweep: 4 trials in ") for line in shown) == 1
    assert sum(line == STATUS for line in shown) == 1 and any(line.startswith("ranked trials") for line in shown)
    drawn = [line.split("\x1b[J")[-1] for line in out.replace("\r\n", "\n").split("\n")]
    assert all(len(line) < 100 for line in drawn if VIEW_HEAD.match(line))  # the view fits the 100 columns
