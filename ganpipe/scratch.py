"""The temp folders a trial process makes and removes itself: each checkpoint until Tune has copied it
(`ckpt`), each sample PNG until MLflow has it (`png`).

A trial process that ends before its own clean-up leaves them behind: one killed (OOM), or any of a sweep
whose driver was killed hard, which takes in-process Ray's workers down wherever they stand (seen: SIGKILL
to a sweep's driver left two checkpoint folders in the temp folder), and nothing removes them later. So
each folder's name holds its process's id, and every trial that starts on a node, and the driver when a
sweep ends, removes the folders of processes that are gone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

KINDS = ("ckpt", "png")


def new_folder(kind: str = "ckpt") -> Path:
    """An empty folder named after this process: ganpipe-<kind>-<pid>-<random>."""
    if kind not in KINDS:
        raise ValueError(f"scratch folder kind {kind!r}: one of {', '.join(KINDS)}")
    return Path(tempfile.mkdtemp(prefix=f"ganpipe-{kind}-{os.getpid()}-"))


def remove_orphans(root: str | Path | None = None) -> int:
    """Removes the scratch folders under root (the temp folder) whose process has ended; returns how many.
    A running process's folders stay, whoever owns them."""
    removed = 0
    try:
        folders = [f for kind in KINDS for f in Path(root or tempfile.gettempdir()).glob(f"ganpipe-{kind}-*-*")]
    except OSError:  # an unreadable temp folder: nothing of ours to tidy there, and never a trial's failure
        return 0
    for folder in folders:
        pid = owner_pid(folder.name)
        if pid is not None and not process_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    return removed


def owner_pid(name: str) -> int | None:
    """The process id in a folder name made by new_folder; None for any other name (an older ganpipe's
    ganpipe-png-<random> included: mkdtemp's random part has no dash)."""
    for kind in KINDS:
        prefix = f"ganpipe-{kind}-"
        if name.startswith(prefix):
            pid, dash, _ = name.removeprefix(prefix).partition("-")
            return int(pid) if dash and pid.isdigit() else None
    return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no process id can be
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
