"""ganpipe.metrics.weights_file: the one format of the classifiers' weights, written atomically, checked
on reading, loaded once per file version; the shipped files read unchanged."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from ganpipe.metrics import digits_classifier as dc
from ganpipe.metrics import image_classifier as ic
from ganpipe.metrics import styled_classifier as sc
from ganpipe.metrics.weights_file import cached_loader, load_cached, read_weights, save_weights, weights_sha256

# what the evaluation protocols record of the shipped feature spaces: must never change by a refactor
SHIPPED = {
    dc.WEIGHTS_PATH: (dc.ARCH_VERSION, "48a7002ad1d7ead9d230a68ca6993b39db13dc3a484391eb4d0ba7711f7b809b"),
    sc.WEIGHTS_PATH: (sc.ARCH_VERSION, "378ce48eefd16316ffc3d7edcf36eb48a8c59fd68b7c29166a9a767d2b4e0cb1"),
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize("path", list(SHIPPED))
def test_the_shipped_files_read_unchanged_with_their_recorded_sha256(path):
    arch, sha = SHIPPED[path]
    ckpt = read_weights(path, arch)
    assert ckpt["sha256"] == sha == weights_sha256(ckpt["state_dict"])
    assert list(ckpt)[-2:] == ["sha256", "state_dict"]
    assert dc.load_digits_classifier().metadata["sha256"] == SHIPPED[dc.WEIGHTS_PATH][1]
    assert sc.load_styled_classifier().metadata["sha256"] == SHIPPED[sc.WEIGHTS_PATH][1]


def test_a_shipped_file_written_again_reads_the_same(tmp_path):
    shipped = read_weights(dc.WEIGHTS_PATH, dc.ARCH_VERSION)
    meta = {k: v for k, v in shipped.items() if k not in ("sha256", "state_dict")}
    sha = save_weights(tmp_path / "digits_classifier.pt", shipped["state_dict"], meta)
    again = read_weights(tmp_path / "digits_classifier.pt", dc.ARCH_VERSION)
    assert sha == shipped["sha256"] and list(again) == list(shipped)
    assert all(torch.equal(again["state_dict"][k], v) for k, v in shipped["state_dict"].items())
    assert {k: v for k, v in again.items() if k != "state_dict"} == {k: v for k, v in shipped.items() if k != "state_dict"}


def test_the_three_classifiers_save_through_it(tmp_path):
    digits = dc.DigitsClassifier()
    sha = dc.save_digits_classifier(digits, tmp_path / "d.pt", seed=1, heldout_accuracy=0.5)
    ckpt = dc.read_digits_checkpoint(tmp_path / "d.pt")
    assert list(ckpt) == ["arch_version", "seed", "heldout_accuracy", "sha256", "state_dict"] and ckpt["sha256"] == sha
    styled = dc.DigitsClassifier(channels=3)
    sc.save_styled_classifier(styled, {"arch_version": sc.ARCH_VERSION, "seed": 2}, tmp_path / "s.pt")
    assert sc.load_styled_classifier(tmp_path / "s.pt").metadata["seed"] == 2
    image = ic.ImageClassifier(3, 4)
    ic.save_image_classifier(image, {"arch_version": ic.ARCH_VERSION, "channels": 3, "classes": list("abcd")},
                             tmp_path / "i.pt")
    loaded = ic.load_image_classifier(tmp_path / "i.pt")
    assert loaded.metadata["classes"] == list("abcd") and not loaded.training
    assert weights_sha256(loaded.state_dict()) == weights_sha256(image.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pt", "i.pt", "s.pt"]  # nothing left beside them


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    old = save_weights(path, _net().state_dict(), {"arch_version": "a"})
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as out:
            out.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, {"w": torch.ones(3)}, {"arch_version": "a"})
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert read_weights(path, "a")["sha256"] == old
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_reading_refuses_other_files_architectures_and_changed_weights(tmp_path):
    (tmp_path / "text.pt").write_text("not torch")
    with pytest.raises(ValueError, match="is not a feature classifier file"):
        read_weights(tmp_path / "text.pt", "a")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="architecture 'list', expected 'a'"):
        read_weights(tmp_path / "list.pt", "a")
    save_weights(tmp_path / "b.pt", _net().state_dict(), {"arch_version": "b"})
    with pytest.raises(ValueError, match=r"architecture 'b', expected 'a' \(hint\)"):
        read_weights(tmp_path / "b.pt", "a", " (hint)")
    ckpt = torch.load(tmp_path / "b.pt", weights_only=True)
    ckpt["state_dict"]["0.weight"][0, 0] += 1
    torch.save(ckpt, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="do not match their recorded sha256"):
        read_weights(tmp_path / "b.pt", "b")


def test_the_cached_loader_loads_once_per_file_version(tmp_path):
    reads = []

    def read(path):
        reads.append(path)
        return read_weights(path, "n")

    load = cached_loader(read, lambda ckpt: _net())
    net = _net()
    save_weights(tmp_path / "n.pt", net.state_dict(), {"arch_version": "n", "note": 1})
    first = load_cached(load, tmp_path / "n.pt")
    assert first is load_cached(load, str(tmp_path / "n.pt")) and len(reads) == 1
    assert first.metadata == {"arch_version": "n", "note": 1, "sha256": weights_sha256(net.state_dict())}
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    import os

    save_weights(tmp_path / "n.pt", net.state_dict(), {"arch_version": "n", "note": 2})
    st = (tmp_path / "n.pt").stat()
    os.utime(tmp_path / "n.pt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new version, surely
    assert load_cached(load, tmp_path / "n.pt").metadata["note"] == 2 and len(reads) == 2
