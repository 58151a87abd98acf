"""The folders a trial writes each checkpoint into before handing it to Tune.

Tune copies a reported checkpoint to the sweep's storage, so the trial's own copy goes once
`tune.report` returns. A trial process that ends inside its evaluation never gets there: one killed
(OOM), or any of a sweep whose driver was killed hard, which takes in-process Ray's workers down
wherever they stand (seen: SIGKILL to a sweep's driver left two such folders in the temp folder), and
nothing removes them later. So each folder's name holds its process's id, and every trial that starts on
a node, and the driver when a sweep ends, removes the folders of processes that are gone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "ganpipe-ckpt-"


def new_folder() -> Path:
    """An empty folder named after this process: ganpipe-ckpt-<pid>-<random>."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def remove_orphans(root: str | Path | None = None) -> int:
    """Removes the checkpoint folders under root (the temp folder) whose process has ended; returns how many.
    A running process's folders stay, whoever owns them."""
    removed = 0
    try:
        folders = list(Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*-*"))
    except OSError:  # an unreadable temp folder: nothing of ours to tidy there, and never a trial's failure
        return 0
    for folder in folders:
        pid = owner_pid(folder.name)
        if pid is not None and not process_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    return removed


def owner_pid(name: str) -> int | None:
    """The process id in a folder name made by new_folder; None for any other name."""
    pid, dash, _ = name.removeprefix(PREFIX).partition("-")
    return int(pid) if name.startswith(PREFIX) and dash and pid.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no process id can be
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
