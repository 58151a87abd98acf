"""ganpipe.config: YAML -> validated SweepConfig, overrides, the search space."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from ganpipe.config import (
    ConfigError,
    Problem,
    TrialConfig,
    apply,
    describe,
    first_values,
    load_sweep,
    resolve_trial,
    suggest,
    trial_from_dict,
    trial_to_dict,
)
from ganpipe.config.space import Param, ordered

REPO = Path(__file__).resolve().parents[1]

SPACE_YAML = """
name: t
data: ring8
model:
  ema_decay: {choice: [0.999, 0.0]}
  width: {int: [16, 256], log: true}
loss:
  name: {choice: [ns, hinge, wgan-gp]}
  gp_weight: {loguniform: [1.0, 100.0], when: {loss.name: wgan-gp}}
optimizer:
  lr_g: {loguniform: [1e-4, 1e-2]}
  beta1: {uniform: [0.0, 0.9]}
train:
  steps: 3000
  n_disc: {int: [1, 6], when: {loss.name: [wgan-gp]}, default: 2}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path, overrides=()) -> list[Problem]:
    with pytest.raises(ConfigError) as err:
        load_sweep(path, overrides)
    assert str(err.value) == "\n".join(str(p) for p in err.value.problems)
    return err.value.problems


def assert_problem(problems: list[Problem], key: str, fragment: str) -> Problem:
    hits = [p for p in problems if p.key == key and fragment in p.message]
    assert hits, f"no problem at {key!r} containing {fragment!r}; got:\n" + "\n".join(map(str, problems))
    return hits[0]


# ---- malformed configs: each reports the key path and what is allowed --------------------
BAD = [
    # (yaml, key, message fragment)
    ("description: x", "name", "required"),
    ("name: t\npromote: {model_name: a/b}", "promote.model_name", "letters, digits"),  # MLflow refuses it late
    ("name: t\npromote: {model_name: 'x@y'}", "promote.model_name", "letters, digits"),  # models:/NAME@ALIAS
    ("name: t\nsearch: {sampler: cmaes, objectives: [fid, diversity]}", "search.sampler", "one objective"),
    ("name: 'bad name!'", "name", "letters, digits"),
    ("name: t\nmodle: {width: 3}", "modle", "valid: name, description, data"),
    ("name: t\nmodel: {widht: 3}", "model.widht", "valid: architecture, latent_dim"),
    ("name: t\nloss: wgan", "loss.name", "unknown loss 'wgan'; valid: bce, ns, wgan-gp, hinge, lsgan"),
    ("name: t\ndata: {dataset: mnist9}", "data.dataset", "unknown dataset 'mnist9'; valid: ring8"),
    ("name: t\nmodel: transformer", "model.architecture", "valid: mlp, dcgan, resnet"),
    ("name: t\noptimizer: sgd", "optimizer.name", "unknown optimizer 'sgd'; valid: adam, rmsprop"),
    ("name: t\ntrain: {steps: 0}", "train.steps", "must be >= 1, got 0"),
    ("name: t\ntrain: {batch_size: 12.5}", "train.batch_size", "expected an integer, got 12.5"),
    ("name: t\ntrain: {steps: true}", "train.steps", "expected an integer"),
    ("name: t\nmodel: {spectral_norm: 1}", "model.spectral_norm", "expected true or false"),
    ("name: t\noptimizer: {lr_g: 0}", "optimizer.lr_g", "must be > 0"),
    ("name: t\noptimizer: {beta1: 1.0}", "optimizer.beta1", "must be in [0, 1)"),
    ("name: t\nmodel: {ema_decay: -0.1}", "model.ema_decay", "in [0, 1)"),
    ("name: t\nloss: {gp_weight: -1}", "loss.gp_weight", ">= 0"),
    ("name: t\noptimizer: {lr_d: fast}", "optimizer.lr_d", "expected a number, got 'fast'"),
    ("name: t\neval: {every: 0}", "eval.every", ">= 1"),
    ("name: t\neval: {num_samples: -5}", "eval.num_samples", ">= 0"),
    ("name: t\nsearch: {sampler: grid}", "search.sampler", "unknown sampler 'grid'; valid: tpe, tpe-group, random, cmaes, gp"),
    ("name: t\nsearch: {scheduler: {name: pbt}}", "search.scheduler.name", "valid: asha, none"),
    ("name: t\nsearch: {scheduler: {compare: mean}}", "search.scheduler.compare", "valid: best, last"),
    ("name: t\nsearch: {scheduler: {metric: fid}}", "search.scheduler.metric", "unknown key 'metric'"),
    ("name: t\nsearch: {objectives: [diversity]}", "search.objectives", "[mode_tv], [fid], [kid]"),
    ("name: t\ndata: digits\nsearch: {objectives: [mode_tv]}", "search.objectives", "mode_tv is reported on ring8"),
    ("name: t\ndata: digits\npromote: {max_mode_tv: 0.1}", "promote.max_mode_tv", "ring8 and grid25 only"),
    ("name: t\nsearch: {objectives: [kid, diversity]}", "search.objectives", "kid on the raw 2-D coordinates"),
    ("name: t\npromote: {max_mode_tv: 1.5}", "promote.max_mode_tv", "in [0, 1]"),
    ("name: t\nsearch: {scheduler: {reduction_factor: 1}}", "search.scheduler.reduction_factor", "> 1"),
    ("name: t\nsearch: {num_samples: 0}", "search.num_samples", ">= 1"),
    ("name: t\nsearch: {max_concurrent: 0}", "search.max_concurrent", ">= 1"),
    ("name: t\nresources: {cpu: 0}", "resources.cpu", "> 0"),
    ("name: t\nresources: {gpu: -1}", "resources.gpu", ">= 0"),
    ("name: t\nfailure: {max_failures: -1}", "failure.max_failures", ">= 0"),
    ("name: t\nfailure: {keep_checkpoints: -1}", "failure.keep_checkpoints", ">= 0"),
    ("name: t\ntrain: {steps: 3000}\nsearch: {scheduler: {grace_period: 5000}}",
     "search.scheduler.grace_period", "<= train.steps (3000)"),
    ("name: t\ntrain: {steps: {choice: [500, 3000]}}\nsearch: {scheduler: {grace_period: 1000}}", "search.scheduler.grace_period", "fewest train.steps"),
    ("name: t\nsearch: {scheduler: {grace_period: -1}}", "search.scheduler.grace_period", ">= 0"),
    ("name: t\ntrain: {steps: 3000}\nsearch: {startup_steps: 3000}", "search.startup_steps", "< train.steps (3000)"),
    ("name: t\nsearch: {sampler: cmaes, startup_steps: 500}", "search.startup_steps", "gives cmaes none"),
    ("name: t\nsearch: {startup_steps: -1}", "search.startup_steps", ">= 0"),
    ("name: t\noptimizer: {lr_g: {uniform: [0, 1e-3]}}", "optimizer.lr_g", "must be > 0"),
    ("name: t\noptimizer: {lr_g: {loguniform: [1e-3, 1e-4]}}", "optimizer.lr_g", "low must be < high"),
    ("name: t\ntrain: {grad_clip: {loguniform: [0, 10]}}", "train.grad_clip", "low must be > 0"),
    ("name: t\ntrain: {batch_size: {int: [16.5, 64]}}", "train.batch_size", "expected an integer"),
    ("name: t\ntrain: {batch_size: {uniform: [16, 64]}}", "train.batch_size", "use int:"),
    ("name: t\nloss: {name: {loguniform: [1, 2]}}", "loss.name", "use choice:"),
    ("name: t\nloss: {name: {choice: [ns, wgan]}}", "loss.name", "unknown loss 'wgan'"),
    ("name: t\nmodel: {width: {choice: []}}", "model.width", "non-empty list"),
    ("name: t\nmodel: {width: {choice: [[1, 2], 64]}}", "model.width", "not a scalar"),
    ("name: t\nmodel: {width: {choice: [64, 64]}}", "model.width", "repeat"),
    ("name: t\nmodel: {width: {choice: [100, 1e2]}}", "model.width", "repeat"),  # "1e2" -> 100
    ("name: t\noptimizer: {lr_g: {loguniform: [1e-4, 1e-3], sigma: 2}}", "optimizer.lr_g.sigma", "valid: choice"),
    ("name: t\noptimizer: {lr_g: {when: {loss.name: ns}}}", "optimizer.lr_g", "exactly one of choice"),
    ("name: t\noptimizer: {lr_g: {uniform: [1e-4, 1e-3], log: true}}", "optimizer.lr_g.log", "use loguniform"),
    ("name: t\ntrain: {seed: {int: [0, 10], log: true}}", "train.seed", "low bound >= 1"),
    ("name: t\nloss: {name: {choice: [ns, wgan-gp]}, gp_weight: {uniform: [1, 10], when: {loss.nam: wgan-gp}}}",
     "loss.gp_weight.when", "unknown key 'loss.nam'"),
    ("name: t\nloss: {name: {choice: [ns, hinge]}, gp_weight: {uniform: [1, 10], when: {loss.name: lsgan}}}",
     "loss.gp_weight.when", "loss.name can never be 'lsgan'"),
    ("name: t\nloss: {name: ns, gp_weight: {uniform: [1, 10], when: {loss.name: wgan}}}",
     "loss.gp_weight.when", "unknown loss 'wgan'"),
    ("name: t\nloss: {name: ns, gp_weight: {uniform: [1, 10], when: {search.sampler: tpe}}}",
     "loss.gp_weight.when", "unknown key 'search.sampler'"),
    ("name: t\ntrain: {n_disc: {int: [1, 5], when: {train.batch_size: 64}}, batch_size: {choice: [64, 128], "
     "when: {train.n_disc: 2}}}", "train.batch_size.when", "condition cycle: train.batch_size -> train.n_disc -> train.batch_size"),
    ("name: t\ntrain: {n_disc: {int: [1, 5], when: {loss.name: wgan-gp}, default: 0}}", "train.n_disc.default", ">= 1"),
    ("name: t\nsearch: {num_samples: {int: [1, 4]}}", "search.num_samples", "only allowed in the trial sections"),
    ("name: t\ntrain: 5", "train", "expected a mapping"),
    ("name: t\ndescription: [1]", "description", "expected a string"),
    ("name: t\npromote: {recheck_seeds: 0}", "promote.recheck_seeds", ">= 1"),
    ("name: t\nmodel: {latent_dim: 0}", "model.latent_dim", ">= 1"),
    ("name: t\noptimizer: {lr_g: .inf}", "optimizer.lr_g", "must be finite"),
    ("name: t\nloss: [ns]", "loss", "expected a mapping or a loss name"),
    ("name: t\nmodel: {width: [}", "(yaml)", "line 2"),
    ("- name: t", "(top level)", "expected a mapping"),
    ("name: t\nloss: {name: ns}\nloss: {name: hinge}", "(yaml)", "line 3, column 1: duplicate key 'loss'"),
    ("name: t\nmodel: {width: 32, width: 64}", "(yaml)", "duplicate key 'width'"),
    ("name: t\noptimizer: {lr_g: {loguniform: [1e-4, 1e-2]}}\nloss: {name: ns, gp_weight: {uniform: [1, 10], "
     "when: {optimizer.lr_g: 0.001}}}", "loss.gp_weight.when", "optimizer.lr_g is drawn from a continuous loguniform"),
    ("", "(top level)", "empty file"),
]


@pytest.mark.parametrize("text,key,fragment", BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_malformed_config(tmp_path, text, key, fragment):
    path = write(tmp_path, text)
    problem = assert_problem(problems_of(path), key, fragment)
    assert problem.file == str(path)


def test_at_least_25_distinct_malformed_configs():
    assert len({b[0] for b in BAD}) >= 25


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_problem(problems_of(missing), "(file)", "cannot read")


def test_all_problems_at_once(tmp_path):
    path = write(tmp_path, """
        name: t
        loss: wgan
        optimizer: {lr_g: -1, lr_d: {uniform: [0, 1e-3]}}
        train: {batch_size: 12.5, typo: 1}
        search: {sampler: grid}
        """)
    problems = problems_of(path)
    keys = {p.key for p in problems}
    assert {"loss.name", "optimizer.lr_g", "optimizer.lr_d", "train.batch_size", "train.typo",
            "search.sampler"} <= keys
    text = str(ConfigError(problems))
    assert len(text.splitlines()) == len(problems)
    assert all(line.startswith(f"{path}: ") for line in text.splitlines())


# ---- valid configs -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["quick.yaml", "stability.yaml"])
def test_shipped_sweeps_load(name):
    sweep = load_sweep(REPO / "sweeps" / name)
    assert sweep.space and sweep.name == name.removesuffix(".yaml")
    assert describe(sweep.space).count("\n") == len(sweep.space) - 1


def test_fixed_values_and_space(tmp_path):
    sweep = load_sweep(write(tmp_path, SPACE_YAML))
    assert sweep.source == str(tmp_path / "sweep.yaml")
    assert sweep.trial.train.steps == 3000
    # searched keys stay at their dataclass defaults in the fixed trial
    assert sweep.trial.loss.name == "ns" and sweep.trial.loss.gp_weight == 10.0
    paths = [p.path for p in sweep.space]
    assert paths.index("loss.name") < paths.index("loss.gp_weight") < paths.index("train.n_disc")
    gp = next(p for p in sweep.space if p.path == "loss.gp_weight")
    assert (gp.kind, gp.low, gp.high, gp.log, gp.when) == ("loguniform", 1.0, 100.0, True, {"loss.name": ["wgan-gp"]})


def test_float_strings_are_coerced(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string
    sweep = load_sweep(write(tmp_path, """
        name: t
        optimizer: {lr_g: 1e-3, lr_d: {loguniform: [1e-5, 1e-3]}, beta2: {choice: [9e-1, 0.99]}}
        loss: {name: wgan-gp, gp_weight: 5}
        train: {steps: 1e4}
        """))
    assert sweep.trial.optimizer.lr_g == 0.001 and isinstance(sweep.trial.optimizer.lr_g, float)
    assert sweep.trial.loss.gp_weight == 5.0 and isinstance(sweep.trial.loss.gp_weight, float)
    assert sweep.trial.train.steps == 10000 and isinstance(sweep.trial.train.steps, int)
    lr_d = next(p for p in sweep.space if p.path == "optimizer.lr_d")
    assert (lr_d.low, lr_d.high) == (1e-5, 1e-3)
    beta2 = next(p for p in sweep.space if p.path == "optimizer.beta2")
    assert beta2.choices == [0.9, 0.99]


def test_shorthand_sections(tmp_path):
    sweep = load_sweep(write(tmp_path, "name: t\ndata: grid25\nmodel: dcgan\nloss: hinge\noptimizer: rmsprop\n"))
    t = sweep.trial
    assert (t.data.dataset, t.model.architecture, t.loss.name, t.optimizer.name) == ("grid25", "dcgan", "hinge", "rmsprop")


def test_int_distribution_on_a_float_field(tmp_path):
    sweep = load_sweep(write(tmp_path, "name: t\ntrain: {grad_clip: {int: [1, 10]}}\n"))
    cfg = resolve_trial(sweep, {"train.grad_clip": 4})
    assert cfg.train.grad_clip == 4.0 and isinstance(cfg.train.grad_clip, float)


# ---- overrides ------------------------------------------------------------------------
def test_override_fixed_values(tmp_path):
    path = write(tmp_path, SPACE_YAML)
    sweep = load_sweep(path, ["model.spectral_norm=true", "train.steps=2000", "optimizer.lr_d=1e-3",
                              "search.scheduler.grace_period=500"])
    assert sweep.trial.model.spectral_norm is True
    assert sweep.trial.train.steps == 2000
    assert sweep.trial.optimizer.lr_d == 1e-3
    assert sweep.search.scheduler.grace_period == 500


def test_override_distribution_and_replacing_one(tmp_path):
    path = write(tmp_path, SPACE_YAML)
    sweep = load_sweep(path, ["optimizer.lr_d={loguniform: [1e-4, 1e-3]}", "loss=wgan-gp"])
    paths = {p.path for p in sweep.space}
    assert "optimizer.lr_d" in paths
    assert "loss.name" not in paths and sweep.trial.loss.name == "wgan-gp"
    # gp_weight's condition now refers to a fixed key, and holds
    assert first_values(sweep.space, sweep.trial)["loss.gp_weight"] == pytest.approx(10.0)


def test_override_on_shorthand_file_section(tmp_path):
    path = write(tmp_path, "name: t\nloss: hinge\n")
    sweep = load_sweep(path, ["loss.r1_weight=0.1"])
    assert (sweep.trial.loss.name, sweep.trial.loss.r1_weight) == ("hinge", 0.1)


@pytest.mark.parametrize("override,key,fragment", [
    ("model.widht=3", "model.widht", "unknown key 'widht'; valid: architecture"),
    ("modle.width=3", "modle", "unknown key 'modle'"),
    ("loss.name.x=1", "loss.name.x", "loss.name is a value"),
    ("train.steps", "train.steps", "expected KEY.PATH=VALUE"),
    ("=3", "=3", "expected KEY.PATH=VALUE"),
    ("train.steps=[1", "train.steps", "cannot parse"),
    ("train.steps=0", "train.steps", ">= 1"),  # a bad value from --set names --set
    ("loss=wgan", "loss.name", "unknown loss 'wgan'"),
    ("train=5", "train", "expected a mapping"),
])
def test_bad_overrides(tmp_path, override, key, fragment):
    path = write(tmp_path, "name: t\n")
    problem = assert_problem(problems_of(path, [override]), key, fragment)
    assert problem.file == "--set"


def test_override_problems_reported_with_file_problems(tmp_path):
    path = write(tmp_path, "name: t\ntrain: {steps: -1}\n")
    problems = problems_of(path, ["model.nope=1"])
    assert {(p.file, p.key) for p in problems} == {(str(path), "train.steps"), ("--set", "model.nope")}


# ---- the space ----------------------------------------------------------------------------
def test_first_values(tmp_path):
    sweep = load_sweep(write(tmp_path, SPACE_YAML))
    v = first_values(sweep.space, sweep.trial)
    assert v["model.ema_decay"] == 0.999 and v["loss.name"] == "ns"
    assert v["model.width"] == 64  # geometric midpoint of [16, 256]
    assert v["optimizer.lr_g"] == pytest.approx(1e-3)  # geometric midpoint
    assert v["optimizer.beta1"] == pytest.approx(0.45)
    assert "loss.gp_weight" not in v and "train.n_disc" not in v  # loss.name is ns
    cfg = resolve_trial(sweep, v)
    assert cfg.train.n_disc == 2  # the `default:` of an inactive param
    assert cfg.loss.gp_weight == 10.0  # no default: the base value


def test_first_values_condition_holds_and_int_midpoint():
    space = [
        Param("loss.name", "choice", choices=["wgan-gp", "ns"]),
        Param("train.n_disc", "int", low=1, high=6, when={"loss.name": ["wgan-gp"]}),
        Param("loss.gp_weight", "loguniform", low=1.0, high=100.0, log=True, when={"loss.name": ["wgan-gp"]}),
    ]
    v = first_values(space)
    assert v == {"loss.name": "wgan-gp", "train.n_disc": 4, "loss.gp_weight": pytest.approx(10.0)}


def test_ordered_puts_conditions_after_what_they_refer_to():
    a = Param("loss.gp_weight", "uniform", low=1, high=2, when={"loss.name": ["wgan-gp"]})
    b = Param("loss.name", "choice", choices=["ns", "wgan-gp"])
    assert [p.path for p in ordered([a, b])] == ["loss.name", "loss.gp_weight"]
    with pytest.raises(ValueError, match="cycle"):
        ordered([Param("a.x", "choice", choices=[1], when={"a.y": [1]}),
                 Param("a.y", "choice", choices=[1], when={"a.x": [1]})])


def test_suggest_conditional_params_with_optuna(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = load_sweep(write(tmp_path, SPACE_YAML))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, sweep.space, sweep.trial)
        is_wgan = trial.params["loss.name"] == "wgan-gp"
        seen.add(is_wgan)
        assert ("loss.gp_weight" in trial.params) == is_wgan == ("loss.gp_weight" in values)
        assert ("train.n_disc" in trial.params) == is_wgan
        assert values == trial.params
        cfg = resolve_trial(sweep, values)
        assert cfg.train.n_disc == (values["train.n_disc"] if is_wgan else 2)
        assert 1e-4 <= cfg.optimizer.lr_g <= 1e-2 and 16 <= cfg.model.width <= 256
        study.tell(trial, 0.0)
    assert seen == {True, False}


@pytest.mark.parametrize("name", ["tpe", "tpe-group", "random", "cmaes", "gp"])
def test_every_sampler_searches_a_conditional_space(tmp_path, name):
    """search.sampler names an Optuna sampler (ganpipe.tune.search.make_sampler); each one, past its start-up
    trials, still suggests only the parameters a trial's choices make live."""
    from ganpipe.tune.search import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = load_sweep(write(tmp_path, SPACE_YAML), [f"search.sampler={name}", "search.startup_trials=3"])
    sampler = make_sampler(sweep)
    expected = {"tpe": optuna.samplers.TPESampler, "tpe-group": optuna.samplers.TPESampler,
                "random": optuna.samplers.RandomSampler, "cmaes": optuna.samplers.CmaEsSampler,
                "gp": optuna.samplers.GPSampler}[name]
    assert type(sampler) is expected
    if name == "tpe-group":
        assert sampler._group and sampler._multivariate
    study = optuna.create_study(sampler=sampler)
    for _ in range(6):
        trial = study.ask()
        values = suggest(trial, sweep.space, sweep.trial)
        assert ("loss.gp_weight" in values) == (values["loss.name"] == "wgan-gp")
        cfg = resolve_trial(sweep, values)
        study.tell(trial, abs(cfg.optimizer.lr_g - 1e-3) + (cfg.loss.name == "ns"))
    assert len(study.trials) == 6


def test_suggest_condition_on_a_fixed_key():
    space = [Param("loss.gp_weight", "uniform", low=1.0, high=2.0, when={"loss.name": ["wgan-gp"]})]
    trial = optuna.create_study().ask()
    assert suggest(trial, space, TrialConfig()) == {} and trial.params == {}  # base loss is ns
    base = apply(TrialConfig(), {"loss.name": "wgan-gp"})
    trial = optuna.create_study().ask()
    assert set(suggest(trial, space, base)) == {"loss.gp_weight"}


def test_describe(tmp_path):
    text = describe(load_sweep(write(tmp_path, SPACE_YAML)).space)
    assert "loss.gp_weight" in text and "loguniform [1, 100]" in text and "when loss.name = wgan-gp" in text
    assert "int (log) [16, 256]" in text and "else 2" in text
    assert "no search space" in describe([])


# ---- apply, round trip --------------------------------------------------------------------
def test_apply_and_round_trip():
    base = TrialConfig()
    cfg = apply(base, {"loss.name": "hinge", "optimizer.lr_g": 1e-3, "train.n_disc": 3})
    assert (cfg.loss.name, cfg.optimizer.lr_g, cfg.train.n_disc) == ("hinge", 1e-3, 3)
    assert base.loss.name == "ns"  # base is untouched
    assert trial_from_dict(trial_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown trial key"):
        apply(base, {"loss.nope": 1})


def test_trial_from_dict_validates():
    d = trial_to_dict(TrialConfig())
    d["loss"]["name"] = "wgan"
    d["train"]["extra"] = 1
    with pytest.raises(ConfigError) as err:
        trial_from_dict(d)
    assert {p.key for p in err.value.problems} == {"loss.name", "train.extra"}
    assert trial_from_dict({"loss": {"name": "hinge"}}).loss.name == "hinge"  # missing keys: defaults


def test_resolve_trial_rejects_bad_values(tmp_path):
    sweep = load_sweep(write(tmp_path, SPACE_YAML))
    with pytest.raises(ConfigError) as err:
        resolve_trial(sweep, {"optimizer.lr_g": -1.0})
    assert err.value.problems[0].key == "optimizer.lr_g"


def test_a_binary_file_is_bad_input_not_a_decode_traceback(tmp_path):
    from ganpipe.pipeline.config import load_pipeline

    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    for load, what in ((load_sweep, "a sweep file"), (load_pipeline, "a pipeline file")):
        with pytest.raises(ConfigError) as err:
            load(path)
        assert str(err.value) == f"{path}: (file): not a UTF-8 text file (byte 0): {what} is YAML text"


# ---- values no trial would use ------------------------------------------------------------
@pytest.mark.parametrize("text,overrides,key,fragment", [
    # typed on the command line: the fix names the key to set
    ("name: t\nloss: hinge\n", ["loss.gp_weight=20"], "loss.gp_weight",
     "used only when loss.name is wgan-gp, and loss.name is hinge: add --set loss.name=wgan-gp"),
    ("name: t\n", ["optimizer={name: rmsprop, beta2: 0.9}"], "optimizer.beta2",
     "used only when optimizer.name is adam, and optimizer.name is rmsprop"),
    ("name: t\ndata: digits\nmodel: dcgan\n", ["loss.cycle_weight=3"], "loss.cycle_weight",
     "data.dataset is digits"),
    # the file contradicts itself
    ("name: t\nloss: {name: ns, gp_weight: 5}\n", [], "loss.gp_weight", "leave loss.gp_weight out"),
    ("name: t\noptimizer: {name: {choice: [rmsprop]}, beta1: 0.2}\n", [], "optimizer.beta1", "rmsprop"),
])
def test_a_fixed_value_no_trial_uses_is_refused(tmp_path, text, overrides, key, fragment):
    path = write(tmp_path, text)
    problem = assert_problem(problems_of(path, overrides), key, fragment)
    assert problem.file == ("--set" if overrides else str(path))


def test_values_that_some_trial_uses_pass(tmp_path):
    # the loss is searched, so a fixed gp_weight applies to its wgan-gp trials
    sweep = load_sweep(write(tmp_path, SPACE_YAML), ["loss.gp_weight=20"])
    assert sweep.trial.loss.gp_weight == 20
    # a conditional distribution under a fixed parent is never sampled: fine
    assert load_sweep(write(tmp_path, SPACE_YAML), ["loss=hinge"]).trial.loss.name == "hinge"
    # the file's wgan-gp weight, made unused by a --set of the loss: the user switched on purpose
    path = write(tmp_path, "name: t\nloss: {name: wgan-gp, gp_weight: 5}\noptimizer: {beta1: 0.0}\n")
    sweep = load_sweep(path, ["loss=hinge", "optimizer.name=rmsprop"])
    assert (sweep.trial.loss.name, sweep.trial.optimizer.name) == ("hinge", "rmsprop")


def test_one_trial_checks_against_its_first_values(tmp_path):
    """`ganpipe trial` takes the first loss (ns), so a gp_weight fits the sweep but not the trial."""
    path = write(tmp_path, SPACE_YAML)
    load_sweep(path, ["loss.gp_weight=20"])
    with pytest.raises(ConfigError) as err:
        load_sweep(path, ["loss.gp_weight=20"], single_trial=True)
    assert_problem(err.value.problems, "loss.gp_weight", "loss.name is ns (its first value): add --set loss.name=wgan-gp")
    assert load_sweep(path, ["loss.gp_weight=20", "loss=wgan-gp"], single_trial=True).trial.loss.gp_weight == 20


@pytest.mark.parametrize("dataset,expected", [("ring8", ["mode_tv"]), ("grid25", ["mode_tv"]), ("digits", ["fid"]),
                                              ("stacked-digits", ["fid"])])
def test_objectives_default_to_the_datasets_proper_score(tmp_path, dataset, expected):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ndata: {dataset}\n")
    assert load_sweep(path).search.objectives == expected
    path.write_text(f"name: t\ndata: {dataset}\nsearch: {{objectives: [fid, diversity]}}\n")
    assert load_sweep(path).search.objectives == ["fid", "diversity"]  # declared: kept
