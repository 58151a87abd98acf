"""Scratch folders (checkpoints, sample PNGs): those of ended processes go, those of running ones stay."""
from __future__ import annotations

import os
import tempfile

import pytest

from conftest import orphan_scratch
from ganpipe import scratch


def test_only_the_folders_of_ended_processes_are_removed(tmp_path):
    made = orphan_scratch(tmp_path)  # a real process's, ended without cleaning up
    made_png = orphan_scratch(tmp_path, "png")
    running = tmp_path / f"ganpipe-ckpt-{os.getpid()}-live"  # this test's own process: running
    running_png = tmp_path / f"ganpipe-png-{os.getpid()}-live"
    unnamed = tmp_path / "ganpipe-png-abc123"  # an older ganpipe's name, with no process id: not ours to judge
    other = tmp_path / "not-ganpipe-1-x"
    impossible = tmp_path / f"ganpipe-ckpt-{10 ** 30}-x"  # no process has that id: gone, and no crash
    for folder in (running, running_png, unnamed, other, impossible):
        folder.mkdir()
    (running / "checkpoint.pt").write_bytes(b"x")

    assert scratch.remove_orphans(tmp_path) == 3
    assert not made.exists() and not made_png.exists() and not impossible.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, running_png.name, unnamed.name, other.name])
    assert (running / "checkpoint.pt").exists()


def test_folder_names_give_their_process():
    assert scratch.owner_pid("ganpipe-ckpt-4242-a1b2c3") == 4242
    assert scratch.owner_pid("ganpipe-ckpt-a1b2c3") is None
    assert scratch.owner_pid("ganpipe-ckpt--1-a") is None
    assert scratch.owner_pid("other-4242-a") is None
    assert scratch.owner_pid("ganpipe-png-4242-a1b2c3") == 4242
    assert scratch.owner_pid("ganpipe-png-a1b2c3") is None  # an older ganpipe's PNG folder
    assert scratch.owner_pid("ganpipe-other-4242-a") is None


def test_a_folder_kind_is_named_or_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert scratch.new_folder("png").name.startswith(f"ganpipe-png-{os.getpid()}-")
    with pytest.raises(ValueError, match="ckpt, png"):
        scratch.new_folder("samples")
