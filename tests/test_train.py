"""The loop: reproducible, resumable exactly, and a diverged run says where it diverged."""
import json
import math

import pytest
import torch

from ganpipe.config.schema import (
    DataConfig, EvalConfig, LossConfig, ModelConfig, OptimizerConfig, TrainConfig, TrialConfig,
)
from ganpipe.train import trainer_from_checkpoint
from ganpipe.train.loop import Trainer
from ganpipe.train.reporter import ListReporter


def small(dataset="ring8", arch="mlp", loss="wgan-gp", steps=40, every=20, **opt):
    return TrialConfig(
        data=DataConfig(dataset),
        model=ModelConfig(architecture=arch, latent_dim=8, width=16, ema_decay=0.9, spectral_norm=arch == "resnet"),
        loss=LossConfig(name=loss, r1_weight=0.1 if loss == "ns" else 0.0),
        optimizer=OptimizerConfig(**{"name": "adam", "lr_g": 1e-3, "lr_d": 1e-3, **opt}),
        train=TrainConfig(steps=steps, batch_size=32, n_disc=2, seed=3),
        eval=EvalConfig(every=every, num_samples=500 if dataset in ("ring8", "grid25") else 0),
    )


def params(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("dataset,arch,loss", [("ring8", "mlp", "wgan-gp"), ("digits", "resnet", "ns")])
def test_same_config_and_seed_give_the_same_numbers(dataset, arch, loss):
    a, b = ListReporter(), ListReporter()
    Trainer(small(dataset, arch, loss)).train(a)
    Trainer(small(dataset, arch, loss)).train(b)
    assert [r.step for r in a.reports] == [20, 40]
    for ra, rb in zip(a.reports, b.reports):
        for key in ("fid", "diversity", "loss_d", "loss_g"):
            assert ra.metrics[key] == rb.metrics[key]


@pytest.mark.parametrize("dataset,arch,loss", [("ring8", "mlp", "wgan-gp"), ("digits", "dcgan", "ns")])
def test_resume_from_checkpoint_continues_exactly(tmp_path, dataset, arch, loss):
    straight = Trainer(small(dataset, arch, loss))
    straight_reports = ListReporter()
    straight.train(straight_reports)

    first = Trainer(small(dataset, arch, loss, steps=20))
    first.train()
    ckpt = first.save_checkpoint(tmp_path / "ck")
    resumed = trainer_from_checkpoint(ckpt, steps=40)
    resumed_reports = ListReporter()
    resumed.train(resumed_reports)

    assert resumed.step == straight.step == 40
    for name in ("g", "d", "ema"):
        assert torch.equal(params(getattr(straight, name)), params(getattr(resumed, name)))
    assert resumed_reports.reports[-1].metrics["fid"] == straight_reports.reports[-1].metrics["fid"]
    assert resumed_reports.reports[-1].metrics["loss_d"] == straight_reports.reports[-1].metrics["loss_d"]


def test_checkpoint_holds_config_protocol_and_rng(tmp_path):
    from ganpipe.train.checkpoint import read_checkpoint

    t = Trainer(small(steps=20))
    t.train()
    payload = read_checkpoint(t.save_checkpoint(tmp_path / "c.pt"))
    assert payload["config"]["loss"]["name"] == "wgan-gp"
    assert payload["step"] == 20
    assert payload["protocol"]["dataset"] == "ring8"
    assert set(payload["rng"]) == {"train", "torch", "numpy", "python"}
    for key in ("g", "d", "ema", "opt_g", "opt_d"):
        assert payload[key]
    json.dumps(payload["protocol"])  # the protocol is plain data


def test_divergence_stops_with_the_step():
    # a learning rate of 1e12 blows the weights up within a few steps
    reporter = ListReporter()
    result = Trainer(small(loss="lsgan", steps=200, every=100, lr_g=1e12, lr_d=1e12)).train(reporter)
    assert result.status == "diverged"
    assert result.message.startswith(f"diverged at step {result.step}")
    assert 1 <= result.step < 200
    assert reporter.result is result


def test_eval_reports_metrics_and_best():
    reporter = ListReporter()
    result = Trainer(small(steps=40, every=20)).train(reporter)
    assert result.status == "finished" and result.step == 40
    m = reporter.reports[-1].metrics
    for key in ("fid", "diversity", "modes", "high_quality", "kl", "loss_d", "loss_g", "steps_per_sec"):
        assert math.isfinite(m[key]), key
    assert 0.0 <= m["diversity"] <= 1.0
    assert result.best["fid"] == min(r.metrics["fid"] for r in reporter.reports)
    assert reporter.reports[-1].samples.shape == (500, 2)


def test_ema_warms_up_then_keeps_its_decay():
    """The EMA forgets G's random initial weights within tens of steps (decay (1+t)/(10+t) at first), then
    averages with the configured decay; a plain EMA of 0.999 kept most of the initial G for thousands."""
    from ganpipe.train.ema import make_ema, warmup_decay

    assert warmup_decay(0.999, 0) == pytest.approx(0.1) and warmup_decay(0.999, 90) == pytest.approx(0.91)
    assert warmup_decay(0.999, 100_000) == 0.999
    g = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))  # an integer buffer too
    ema = make_ema(g, 0.999)
    ema.update_parameters(g)  # the first update copies G
    start = g[0].weight.detach().clone()
    with torch.no_grad():
        g[0].weight.add_(1.0)  # G moves by 1 and stays there
        g[1].num_batches_tracked += 7
    for _ in range(200):
        ema.update_parameters(g)
    kept = 1.0
    for t in range(1, 201):
        kept *= warmup_decay(0.999, t)
    # the EMA has moved all but `kept` of the way (a plain 0.999 EMA: 0.999**200 = 82 % left behind)
    assert torch.allclose(ema.module[0].weight - start, torch.full_like(start, 1 - kept), atol=1e-5)
    assert kept < 0.06 and int(ema.module[1].num_batches_tracked) == 7  # integer buffers follow G


def test_ema_generator_is_judged_early_with_the_warm_up():
    """ring8, 600 steps, EMA 0.999: the EMA generator already spreads over the ring like G itself (a plain
    EMA's was still the initial blob: 0 of 8 modes up to step 3000 with quick.yaml's first values)."""
    cfg = small(steps=600, every=600, loss="hinge")
    cfg.model = ModelConfig(architecture="mlp", latent_dim=16, width=128, ema_decay=0.999)
    trainer = Trainer(cfg)
    trainer.train()
    z = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        spread_ema, spread_g = trainer.ema.module(z).std(0).mean(), trainer.g(z).std(0).mean()
    assert spread_ema > 0.5 * spread_g, (spread_ema, spread_g)


def test_the_ema_update_a_gpu_makes_matches_the_cpu_one():
    """On a GPU the EMA weight stays a tensor (no host sync; a CUDA graph can hold it): the same numbers."""
    from ganpipe.train.ema import sync_free_lerp, warmup_decay

    torch.manual_seed(0)
    for count in (0, 1, 7, 80, 20_000):
        mine, theirs = [torch.randn(5, 3), torch.randn(4)], [torch.randn(5, 3), torch.randn(4)]
        expected = [m.clone() for m in mine]
        torch._foreach_lerp_(expected, theirs, 1 - warmup_decay(0.999, count) if count else 1.0)
        sync_free_lerp(mine, theirs, torch.tensor(count), 0.999)
        for got, want in zip(mine, expected):
            assert torch.allclose(got, want, atol=1e-6), count


def test_capturable_optimizer_state_round_trips_to_the_cpu():
    """A graphed (CUDA) run saves capturable optimizers; loading turns them back into plain ones, so a CPU
    trainer resumes such a checkpoint. Here on the CPU: trained, switched on, saved, loaded, trained on."""
    from ganpipe.train.graphs import set_capturable

    cfg = small(steps=6, every=6, loss="hinge")
    trainer = Trainer(cfg)
    trainer.train()
    for opt in (trainer.opt_g, trainer.opt_d):
        set_capturable(opt, True)  # what GraphedStep does on a GPU (the step counts stay where the params are)
        assert all(g["capturable"] for g in opt.param_groups)
    state = trainer.state_dict()
    resumed = Trainer(cfg)
    resumed.load_state_dict(state)
    for opt in (resumed.opt_g, resumed.opt_d):
        assert not any(g["capturable"] for g in opt.param_groups)
        assert all(s["step"].device.type == "cpu" for s in opt.state.values())
    resumed.cfg.train.steps = 10
    assert resumed.train().status == "finished" and resumed.step == 10
