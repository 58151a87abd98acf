"""ganpipe.preflight: what loading a sweep asks of the disk, before anything starts (data.root probes,
the feature classifier, the Inception weights, labels for a conditional GAN), reported with validation's
own problems; and that validation itself (ganpipe.config.load_sweep) reads nothing and changes nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from ganpipe.config import ConfigError, load_sweep
from ganpipe.config.paths import absolute_paths
from ganpipe.config.schema import DataConfig, TrialConfig
from ganpipe.config.space import Param
from ganpipe.config.validate import Validator
from ganpipe.preflight import check_files, load_checked_sweep
from test_files_datasets import problems, sweep_file, write_cifar, write_folder, write_idx


# ---- bad roots: problems before anything runs ------------------------------------------------
def test_malformed_roots_are_problems_naming_the_key(tmp_path):
    good = write_idx(tmp_path / "good", gz=False)
    expect = []
    # missing root, root not there
    expect.append(({"dataset": "mnist"}, "data.root", "required for mnist"))
    expect.append(({"dataset": "mnist", "root": str(tmp_path / "nope")}, "data.root", "is not a folder"))
    expect.append(({"dataset": "mnist", "root": str(tmp_path)}, "data.root",
                   f"no train-images-idx3-ubyte[.gz] in {tmp_path} (expected the MNIST IDX files)"))
    # wrong magic
    bad = write_idx(tmp_path / "magic", gz=False)
    raw = bytearray((bad / "train-images-idx3-ubyte").read_bytes())
    raw[3] = 0x01
    (bad / "train-images-idx3-ubyte").write_bytes(bytes(raw))
    expect.append(({"dataset": "mnist", "root": str(bad)}, "data.root", "bad magic number 0x00000801, expected 0x00000803"))
    # truncated, raw and gzipped
    cut = write_idx(tmp_path / "cut", gz=False)
    (cut / "train-images-idx3-ubyte").write_bytes((cut / "train-images-idx3-ubyte").read_bytes()[:-100])
    expect.append(({"dataset": "mnist", "root": str(cut)}, "data.root", "is truncated"))
    cutgz = write_idx(tmp_path / "cutgz", gz=True)
    (cutgz / "train-images-idx3-ubyte.gz").write_bytes((cutgz / "train-images-idx3-ubyte.gz").read_bytes()[:-50])
    expect.append(({"dataset": "mnist", "root": str(cutgz)}, "data.root", "truncated or damaged"))
    # a CIFAR batch missing
    cifar = write_cifar(tmp_path / "cifar")
    (cifar / "data_batch_3").unlink()
    expect.append(({"dataset": "cifar10", "root": str(cifar)}, "data.root", "missing data_batch_3"))
    # an empty image folder
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    expect.append(({"dataset": "image-folder", "root": str(tmp_path / "empty")}, "data.root", "no images (png, jpg"))
    # unsupported sizes, root for a built-in dataset
    expect.append(({"dataset": "mnist", "root": str(good), "image_size": 30}, "data.image_size", "4 or 7 times a power of 2"))
    odd = write_folder(tmp_path / "odd", size=12)
    expect.append(({"dataset": "image-folder", "root": str(odd)}, "data.image_size", "native size 12"))
    expect.append(({"dataset": "ring8", "root": str(good)}, "data.root", "ring8, which is built in"))
    for i, (data, key, text) in enumerate(expect):
        folder = tmp_path / f"cfg{i}"
        folder.mkdir()
        found = problems(sweep_file(folder, data))
        assert any(k == key and text in m for k, m in found), (data, found)


def test_missing_feature_classifier_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GANPIPE_HOME", str(tmp_path / "home"))
    root = write_idx(tmp_path / "mnist", gz=True)
    found = problems(sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)}))
    path = tmp_path / "home" / "features" / "mnist-28x1.pt"
    assert found == [("eval.features", f"no feature classifier for mnist at {path}; "
                                        f"train one with: ganpipe features train mnist --set data.root={root}")]
    flat = write_folder(tmp_path / "flat", classes=("",))
    found = problems(sweep_file(tmp_path, {"dataset": "image-folder", "root": str(flat)}))
    assert found[0][0] == "eval.features" and "unlabelled image folder" in found[0][1]
    not_weights = tmp_path / "notes.txt"
    not_weights.write_text("not a classifier")
    found = problems(sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)}), [f"eval.features={not_weights}"])
    assert found == [("eval.features", f"{not_weights} is not a feature classifier file (torch.load: UnpicklingError)")]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    found = problems(sweep_file(tmp_path, {"dataset": "mnist", "root": str(root)}), ["eval.features=inception"])
    weights = tmp_path / "torch" / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    assert found[0][0] == "eval.inception_weights" and f"no Inception weights at {weights}" in found[0][1]



def test_inception_on_a_builtin_dataset_is_one_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no weights there: that must not be reported too
    found = problems(sweep_file(tmp_path, {"dataset": "digits"}), ["eval.features=inception"])
    assert [key for key, _ in found] == ["eval.features"] and "which is built in" in found[0][1]


def test_a_cross_key_problem_names_the_set_that_caused_it(tmp_path):
    """`--set data=mnist` on a file without data.root: the file's key, with the --set that made it wrong."""
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\n")
    with pytest.raises(ConfigError) as err:
        load_checked_sweep(path, ["data=mnist"])
    assert str(err.value) == "\n".join(str(p) for p in err.value.problems)
    problem = next(p for p in err.value.problems if p.key == "data.root" and "required for mnist" in p.message)
    assert problem.file == f"{tmp_path / 'sweep.yaml'} (with --set data.dataset)"


def test_file_problems_come_with_the_config_problems_in_one_error(tmp_path):
    found = problems(sweep_file(tmp_path, {"dataset": "mnist"}, search={"sampler": "nope"}))
    assert ("search.sampler", "unknown sampler 'nope'; valid: tpe, tpe-group, random, cmaes, gp") in found
    assert any(k == "data.root" and "required for mnist" in m for k, m in found)


def test_a_conditional_gan_asks_the_files_for_labels(tmp_path):
    from ganpipe.config.rules import FileChecks
    from ganpipe.preflight.files import labelled

    flat, pets = write_folder(tmp_path / "flat", classes=("",)), write_folder(tmp_path / "pets")
    assert labelled("image-folder", DataConfig("image-folder", root=str(pets))) is True
    assert labelled("image-folder", DataConfig("image-folder", root=str(flat))) is False
    assert labelled("mnist", DataConfig("mnist", root=str(tmp_path / "nope"))) is None  # the file checks say why
    path = sweep_file(tmp_path, {"dataset": "image-folder", "root": str(flat)},
                      model={"architecture": "dcgan", "conditional": True})
    with pytest.raises(ConfigError) as err:  # the labels only: the feature classifier is another check
        load_sweep(path, file_checks=FileChecks(files=lambda v, trial, space: None, labelled=labelled))
    assert [(p.key, p.message) for p in err.value.problems] == [
        ("model.conditional", "true needs labelled data (digits, mnist, fashion-mnist, cifar10, or an image-folder "
                              f"with one sub-folder per class); {flat} has no class sub-folders")]
    # the pure load reads no files, so it cannot tell: it says nothing of the labels
    assert load_sweep(path).trial.model.conditional is True


def test_validation_reads_nothing_and_makes_paths_absolute_as_its_own_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, {"dataset": "mnist", "root": "nope"}, eval={"features": "inception"})
    sweep = load_sweep(path)  # no such root, no weights: not validation's business
    assert sweep.trial.data.root == str(tmp_path / "nope") and sweep.trial.eval.features == "inception"
    assert "data.root" in [k for k, _ in problems(path)]


def test_the_path_step_covers_the_search_space():
    trial = TrialConfig()
    trial.eval.inception_weights = "~/w.pth"
    space = [Param("data.root", "choice", choices=["a", "/b"], when={"data.dataset": ["mnist"]}, default="c")]
    absolute_paths(trial, space)
    assert trial.eval.inception_weights == str(Path("~/w.pth").expanduser())
    assert space[0].choices == [str(Path("a").absolute()), "/b"] and space[0].default == str(Path("c").absolute())


def test_the_file_checks_change_nothing(tmp_path, monkeypatch):
    """Relative paths stay relative: making them absolute is ganpipe.config.paths' step, not the checks'
    (the checks used to rewrite data.root, eval.features and the space's choices in place)."""
    write_idx(tmp_path / "m", gz=False)
    monkeypatch.chdir(tmp_path)
    trial = TrialConfig()
    trial.data.dataset, trial.data.root, trial.eval.features = "mnist", "m", "f.pt"
    space = [Param("data.root", "choice", choices=["m"])]
    before = repr((trial, space))
    v = Validator("s.yaml")
    check_files(v, trial, space, features=False)
    assert v.problems == [] and repr((trial, space)) == before
