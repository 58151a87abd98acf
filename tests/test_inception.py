"""Inception FID from a local weights file: the load path with a weights file the test writes
(random weights in the format of pt_inception-2015-12-05-6726825d.pth), the refusal to
download, and the protocol that keeps Inception FIDs apart from classifier FIDs.

The network itself was checked once against torchvision 0.28's Inception3 with pytorch-fid's
FID blocks (docs/checks/inception_vs_torchvision.py): the same 566 parameter names and shapes,
identical 2048-d features for the same weights."""
from __future__ import annotations

import json
import math
import socket
import urllib.request
from pathlib import Path

import pytest
import torch

from ganpipe import cli
from ganpipe.config.schema import DataConfig
from ganpipe.data import get_dataset
from ganpipe.metrics import Evaluator
from ganpipe.metrics.inception import WEIGHTS_FILE, FIDInceptionV3, load_fid_inception
from ganpipe.metrics.features import FeaturesMissing
from test_files_datasets import sweep_file, write_idx


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the internet fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def write_weights(path: Path, seed: int) -> Path:
    """Random weights with the names and shapes of the standard file; BN statistics kept sane."""
    torch.manual_seed(seed)
    state = FIDInceptionV3().state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        elif k.endswith("running_mean"):
            state[k] = torch.randn_like(v) * 0.1
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture
def mnist(tmp_path):
    return write_idx(tmp_path / "mnist", gz=False)


def test_without_weights_it_says_which_file_to_place_where_and_downloads_nothing(tmp_path, monkeypatch, mnist,
                                                                                   no_network, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = sweep_file(tmp_path, {"dataset": "mnist", "root": str(mnist)}, eval={"features": "inception",
                                                                              "every": 10, "num_samples": 16})
    assert cli.main(["trial", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    expected = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE
    assert f"eval.inception_weights: no Inception weights at {expected}" in err
    assert "never downloads" in err and f"/{WEIGHTS_FILE}" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(FeaturesMissing, match="no Inception weights"):
        Evaluator(get_dataset(DataConfig("mnist", root=str(mnist))), features="inception")


def test_weights_from_the_torch_hub_cache_give_finite_2048d_fids_and_their_own_protocol(tmp_path, monkeypatch, mnist,
                                                                                         no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    write_weights(tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE, seed=0)
    ds = get_dataset(DataConfig("mnist", root=str(mnist)))
    ev = Evaluator(ds, num_samples=16, features="inception")
    assert ev._real.feats.shape == (40, 2048)
    same = ev.evaluate(ds.eval_real(40, 0)[:16])
    noise = ev.evaluate(torch.rand(16, 1, 28, 28) * 2 - 1)
    assert set(same) == {"fid", "kid", "diversity", "precision", "recall", "density", "coverage"}  # no classes: no modes
    assert all(math.isfinite(v) for v in same.values()) and noise["fid"] > same["fid"]
    proto = ev.protocol
    assert proto["features"]["name"] == "fid-inception-v3" and len(proto["features"]["sha256"]) == 64
    # other weights: another protocol, so their FIDs are never compared or promoted together
    other = write_weights(tmp_path / "other.pth", seed=1)
    ev2 = Evaluator(ds, num_samples=16, features="inception", inception_weights=str(other))
    assert ev2.protocol["features"]["sha256"] != proto["features"]["sha256"]


def test_a_file_that_is_not_the_inception_weights_is_refused(tmp_path):
    from ganpipe.metrics.digits_classifier import WEIGHTS_PATH

    with pytest.raises(ValueError, match="not a state_dict of tensors"):
        load_fid_inception(WEIGHTS_PATH)  # a ganpipe classifier file
    torch.save(torch.load(WEIGHTS_PATH, weights_only=True)["state_dict"], tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold the FID Inception weights"):
        load_fid_inception(tmp_path / "other.pth")  # another network's state_dict
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not an Inception weights file"):
        load_fid_inception(tmp_path / "junk.pth")


@pytest.mark.slow
def test_a_trial_on_mnist_files_with_inception_fid(tmp_path, monkeypatch, mnist, no_network):
    weights = write_weights(tmp_path / "w" / WEIGHTS_FILE, seed=0)
    path = sweep_file(tmp_path, {"dataset": "mnist", "root": str(mnist)},
                      eval={"features": "inception", "inception_weights": str(weights), "every": 10, "num_samples": 16})
    out = tmp_path / "trial"
    assert cli.main(["trial", str(path), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and math.isfinite(result["metrics"]["fid"])
    assert result["protocol"]["features"]["name"] == "fid-inception-v3"
    # conditional class metrics need a classifier of the data's classes: refused before anything runs
    bad = sweep_file(tmp_path, {"dataset": "mnist", "root": str(mnist)},
                     model={"architecture": "dcgan", "conditional": True, "latent_dim": 8, "width": 4},
                     eval={"features": "inception", "inception_weights": str(weights)})
    assert cli.main(["trial", str(bad), "--out", str(tmp_path / "bad")]) == 2
