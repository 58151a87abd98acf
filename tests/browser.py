"""Headless Chromium for tests that must see a page as a browser renders it (Debian's `chromium`; .ci/run
installs it). Two calls, each one chromium process that exits by itself:

    dump_dom(url, tmp) -> str           the DOM after the page's scripts ran (--dump-dom)
    screenshot(url, path, tmp) -> Path  a PNG of the window (1400x900 unless `window` says)

`tmp` is a folder of the test's own (e.g. pytest's tmp_path): chromium's profile goes under it, so runs never
share state. `budget_ms` is Chromium's virtual time budget: how long the page may load and run its scripts
before the dump or the screenshot (virtual time: a page that is done early ends early). `available()` says
whether the browser tests may run (for a skip that names why): chromium is installed, or this is CI ($CI set),
where a missing chromium must fail those tests, not skip them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW = (1400, 900)


def available() -> bool:
    """True where chromium is installed, and always in CI: there a missing chromium fails the test (in `_run`)
    instead of a skip that would hide it."""
    return shutil.which(CHROMIUM) is not None or bool(os.environ.get("CI"))


def _run(args: list[str], url: str, tmp: Path, budget_ms: int, timeout: float,
         window: tuple[int, int] = WINDOW) -> subprocess.CompletedProcess:
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is not installed (.ci/run installs Debian's)")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
    cmd = [CHROMIUM, *FLAGS, f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}",
           f"--virtual-time-budget={budget_ms}", *args, url]
    # virtual time stands still while a request is pending: a page whose server stopped answering hangs here
    # until `timeout` (the UI test's server once did, blocked on a full log pipe)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(url: str, tmp: Path, budget_ms: int = 10000, timeout: float = 90) -> str:
    """The rendered DOM of `url` (http://, file://) as HTML text."""
    return _run(["--dump-dom"], url, Path(tmp), budget_ms, timeout).stdout


def screenshot(url: str, path: Path, tmp: Path, budget_ms: int = 10000, timeout: float = 90,
               window: tuple[int, int] = WINDOW) -> Path:
    """A PNG screenshot of `url` at `path` (the window's size: a taller window shows more of a long page);
    raises if chromium wrote none."""
    path = Path(path).resolve()
    _run([f"--screenshot={path}"], url, Path(tmp), budget_ms, timeout, window)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot at {path}")
    return path
