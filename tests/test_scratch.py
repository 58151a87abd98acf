"""Checkpoint scratch folders: those of ended processes go, those of running ones stay."""
from __future__ import annotations

import os

from conftest import orphan_scratch
from ganpipe.tune import scratch


def test_only_the_folders_of_ended_processes_are_removed(tmp_path):
    made = orphan_scratch(tmp_path)  # a real process's, ended without cleaning up
    running = tmp_path / f"{scratch.PREFIX}{os.getpid()}-live"  # this test's own process: running
    unnamed = tmp_path / f"{scratch.PREFIX}abc123"  # an older ganpipe's name, with no process id: not ours to judge
    other = tmp_path / "not-ganpipe-1-x"
    impossible = tmp_path / f"{scratch.PREFIX}{10 ** 30}-x"  # no process has that id: gone, and no crash
    for folder in (running, unnamed, other, impossible):
        folder.mkdir()
    (running / "checkpoint.pt").write_bytes(b"x")

    assert scratch.remove_orphans(tmp_path) == 2
    assert not made.exists() and not impossible.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, unnamed.name, other.name])
    assert (running / "checkpoint.pt").exists()


def test_folder_names_give_their_process():
    assert scratch.owner_pid("ganpipe-ckpt-4242-a1b2c3") == 4242
    assert scratch.owner_pid("ganpipe-ckpt-a1b2c3") is None
    assert scratch.owner_pid("ganpipe-ckpt--1-a") is None
    assert scratch.owner_pid("other-4242-a") is None
