"""The folders a trial writes each checkpoint into before handing it to Tune.

Tune copies a reported checkpoint to the sweep's storage, so the trial's own copy can go once
`tune.report` returns. It never returns when the scheduler stops the trial at that report (ASHA at a
rung): the training thread waits inside the report, and Tune ends the actor without waiting for it,
so no `finally` runs and the folder stays behind in the node's temp folder, one per stopped trial.
Each folder's name holds its process's id; every trial that starts on a node, and the driver when a
sweep ends, removes the folders of processes that are gone.
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
