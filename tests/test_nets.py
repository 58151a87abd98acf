"""Every architecture x loss x optimizer: shapes, and one D and one G step on CPU."""
import pytest
import torch

from ganpipe.config.schema import LossConfig, ModelConfig, OptimizerConfig, TrainConfig, TrialConfig, DataConfig, EvalConfig
from ganpipe.losses import LOSSES, get_loss
from ganpipe.nets import ARCHITECTURES, build_networks
from ganpipe.train.optim import OPTIMIZERS, make_optimizers

SHAPES = [(2,), (1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sn", [False, True])
def test_shapes(arch, shape, sn):
    g, d = build_networks(ModelConfig(architecture=arch, latent_dim=8, width=8, spectral_norm=sn), shape)
    x = g(torch.randn(3, 8))
    assert x.shape == (3, *shape)
    if len(shape) == 3:
        assert x.min() >= -1 and x.max() <= 1  # images come out through tanh
    assert d(x).shape == (3,)


def test_spectral_norm_is_applied_to_every_d_layer():
    _, d = build_networks(ModelConfig(architecture="resnet", width=8, spectral_norm=True), (1, 8, 8))
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match="valid: mlp, dcgan, resnet"):
        build_networks(ModelConfig(architecture="vit"), (2,))
    with pytest.raises(KeyError, match="valid: bce, ns, wgan-gp, hinge, lsgan"):
        get_loss("wgan")


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_one_d_and_one_g_step_changes_both_networks(arch, loss, opt):
    from ganpipe.train.loop import Trainer

    cfg = TrialConfig(
        data=DataConfig("digits"),
        model=ModelConfig(architecture=arch, latent_dim=8, width=8, ema_decay=0.9),
        loss=LossConfig(name=loss, r1_weight=0.1),
        optimizer=OptimizerConfig(name=opt, lr_g=1e-3, lr_d=1e-3),
        train=TrainConfig(steps=1, batch_size=16, grad_clip=1.0),
        eval=EvalConfig(every=1000),
    )
    t = Trainer(cfg)
    g0 = [p.detach().clone() for p in t.g.parameters()]
    d0 = [p.detach().clone() for p in t.d.parameters()]
    loss_d, loss_g = t._d_step(), t._g_step()
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    assert any(not torch.equal(a, b) for a, b in zip(g0, t.g.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, t.d.parameters()))


def test_losses_have_the_textbook_values_at_zero_logits():
    z = torch.zeros(4)
    log2 = torch.log(torch.tensor(2.0))
    assert torch.isclose(LOSSES["bce"].d_loss(z, z), 2 * log2)
    assert torch.isclose(LOSSES["ns"].g_loss(z), log2)
    assert torch.isclose(LOSSES["bce"].g_loss(z), -log2)
    assert LOSSES["hinge"].d_loss(z, z) == 2.0
    assert LOSSES["lsgan"].g_loss(z) == 0.5
    assert LOSSES["wgan-gp"].gradient_penalty


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    from ganpipe.losses import gradient_penalty, interpolation_shape, r1_penalty

    w = torch.tensor([0.6, 0.8])  # ||w|| = 1
    critic = lambda x: x @ w  # noqa: E731
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert gradient_penalty(critic, real, fake, torch.rand(interpolation_shape(real))).abs() < 1e-6
    assert torch.isclose(r1_penalty(critic, real), torch.tensor(0.5))


def test_optimizers_use_separate_learning_rates():
    g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for name in OPTIMIZERS:
        og, od = make_optimizers(OptimizerConfig(name=name, lr_g=1e-3, lr_d=5e-4), g.parameters(), d.parameters())
        assert og.param_groups[0]["lr"] == 1e-3 and od.param_groups[0]["lr"] == 5e-4
