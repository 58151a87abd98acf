"""The GAN train loop: n_disc D steps, then one G step; evaluate every `eval.every` steps.

No Ray and no MLflow here: the loop reports through a `Reporter`, which is what
lets `ganpipe trial` run the very same code in-process under a debugger.
Same config + same seed -> same numbers on CPU, and a checkpoint resumes exactly.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_

from ganpipe.config.schema import TrialConfig, default_objectives
from ganpipe.objective import OBJECTIVE, objective
from ganpipe.train.ema import make_ema
from ganpipe.data import get_dataset
from ganpipe.losses import get_loss, gradient_penalty, interpolation_shape, r1_penalty
from ganpipe.metrics import Evaluator, fixed_labels, fixed_latents
from ganpipe.nets import build_networks
from ganpipe.train.checkpoint import save_checkpoint
from ganpipe.train.divergence import FinitenessCheck
from ganpipe.train.export import DataFacts, gan_export
from ganpipe.train.graphs import GraphedStep, set_capturable
from ganpipe.train.optim import make_optimizers
from ganpipe.train.reporter import EvalReport, NullReporter, Reporter, TrialResult


class Diverged(Exception):
    pass


class Trainer:
    """Holds everything one trial trains and resumes: G, D, EMA of G, optimizers, RNGs, step."""

    def __init__(self, cfg: TrialConfig, device: str = "cpu", objectives: list[str] | None = None):
        """objectives: the sweep's search.objectives, what makes an evaluation the trial's best
        (ganpipe.objective); None = the dataset's default."""
        self.cfg, self.device = cfg, torch.device(device)
        self.objectives = list(objectives or default_objectives(cfg.data.dataset))
        torch.manual_seed(cfg.train.seed)  # weight init
        self.dataset = get_dataset(cfg.data)
        self.n_classes = self.dataset.n_classes if cfg.model.conditional else 0  # 0 = unconditional
        self.g, self.d = (m.to(self.device) for m in self._build_networks())
        self.ema = make_ema(self.g, cfg.model.ema_decay) if cfg.model.ema_decay > 0 else None
        self.opt_g, self.opt_d = make_optimizers(cfg.optimizer, self.g.parameters(), self.d.parameters())
        self.loss = get_loss(cfg.loss.name)
        # One generator for everything random during training (data, z, GP interpolates),
        # separate from weight init so resuming restores it exactly.
        self.rng = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.step = 0
        self.best: dict[str, float] = {}
        self.evaluator = self._make_evaluator()
        # CUDA only: every step as one CUDA graph (ganpipe.train.graphs), made when training starts
        self.graphed: GraphedStep | None = None
        self._graphing = None  # the GraphedStep recording or capturing this step, while it does

    def _build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        return build_networks(self.cfg.model, self.dataset.shape, self.n_classes)

    def _make_evaluator(self):
        cfg = self.cfg
        return Evaluator(self.dataset, cfg.eval.num_samples, features=cfg.eval.features or None,
                         inception_weights=cfg.eval.inception_weights or None, conditional=bool(self.n_classes),
                         device=self.device)

    # ---- one step -------------------------------------------------------------
    def _feed(self, draw):
        """What `draw()` draws on the CPU with the trainer's generator (a tensor or a tuple of them), on the
        device. While a CUDA graph is captured: fixed device buffers, which every replay refills with a new
        draw in the same order, so a graphed step draws the same numbers as an eager one (GraphedStep.feed)."""
        drawn = draw()
        if self._graphing is not None:
            return self._graphing.feed(draw, drawn)
        return tuple(x.to(self.device) for x in drawn) if isinstance(drawn, tuple) else drawn.to(self.device)

    def _z(self, n: int) -> torch.Tensor:
        return self._feed(lambda: torch.randn(n, self.cfg.model.latent_dim, generator=self.rng))

    def _real(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n real samples and, for a conditional GAN, their labels (else None)."""
        if not self.n_classes:
            return self._feed(lambda: self.dataset.sample(n, self.rng)), None
        return self._feed(lambda: tuple(self.dataset.sample_labelled(n, self.rng)))

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """n_disc D steps, then one G step: (last D loss, G loss)."""
        for _ in range(self.cfg.train.n_disc):
            loss_d = self._d_step()
        return loss_d, self._g_step()

    def _d_step(self) -> torch.Tensor:
        bs = self.cfg.train.batch_size
        real, y = self._real(bs)
        # conditional: fakes get the real batch's labels, so D compares like with like
        g, d = (self.g, self.d) if y is None else (lambda z: self.g(z, y), lambda x: self.d(x, y))
        with torch.no_grad():
            fake = g(self._z(bs))
        return self._update(self._d_loss(d, real, fake), self.opt_d, self.d)

    def _d_loss(self, d, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """D's loss on one real and one fake batch, with the configured gradient penalty and R1."""
        cfg = self.cfg.loss
        loss = self.loss.d_loss(d(real), d(fake))
        if self.loss.gradient_penalty:
            alpha = self._feed(lambda: torch.rand(interpolation_shape(real), generator=self.rng))
            loss = loss + cfg.gp_weight * gradient_penalty(d, real, fake, alpha)
        if cfg.r1_weight > 0:
            loss = loss + cfg.r1_weight * r1_penalty(d, real)
        return loss

    def _g_step(self) -> torch.Tensor:
        bs = self.cfg.train.batch_size
        if self.n_classes:
            y = self._feed(lambda: torch.randint(self.n_classes, (bs,), generator=self.rng))
            fake_logits = self.d(self.g(self._z(bs), y), y)
        else:
            fake_logits = self.d(self.g(self._z(bs)))
        return self._update(self.loss.g_loss(fake_logits), self.opt_g, self.g)

    def _update(self, loss: torch.Tensor, opt: torch.optim.Optimizer, net: torch.nn.Module) -> torch.Tensor:
        """One optimizer step on `loss` (gradient clipping if configured); G steps also move the EMA."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip > 0:
            clip_grad_norm_(net.parameters(), self.cfg.train.grad_clip)
        opt.step()
        if net is self.g and self.ema is not None:
            self.ema.update_parameters(self.g)
        return loss.detach()

    # ---- evaluation -------------------------------------------------------------
    @property
    def generator(self) -> torch.nn.Module:
        """The generator to judge and ship: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.g

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None, batch: int = 2048) -> torch.Tensor:
        """Samples of the generator to ship for latents z (and class labels, conditional G only)."""
        g = self.generator
        was_training = g.training
        g.eval()
        try:
            out = []
            for i in range(0, len(z), batch):
                args = [z[i : i + batch].to(self.device)]
                if labels is not None:
                    args.append(labels[i : i + batch].to(self.device))
                out.append(g(*args).cpu())
            return torch.cat(out)
        finally:
            g.train(was_training)

    @property
    def sample_modes(self) -> tuple[torch.Tensor, float] | None:
        """(centres, std) of the true modes of 2-D mixture data, marked on scatter PNGs; else None."""
        centers = getattr(self.dataset, "centers", None)
        return None if centers is None else (centers, float(self.dataset.std))

    @property
    def grid_columns(self) -> int | None:
        """Columns of the sample PNG: one per class for a conditional G, else square."""
        return self.n_classes or None

    def export(self) -> tuple[torch.nn.Module, torch.Tensor, dict]:
        """(model with one tensor input, example input, metadata) of what a promotion registers
        (ganpipe.train.export: the same as export_generator of this trainer's checkpoint)."""
        return gan_export(self.generator, self.cfg.model.latent_dim, DataFacts.of(self.dataset, self.n_classes))

    def evaluate(self) -> tuple[dict[str, float], torch.Tensor]:
        n = self.evaluator.num_samples
        labels = fixed_labels(n, self.n_classes) if self.n_classes else None
        samples = self.generate(fixed_latents(n, self.cfg.model.latent_dim), labels)
        return self.evaluator.evaluate(samples, labels=labels), samples

    # ---- the loop -------------------------------------------------------------------
    def train(self, reporter: Reporter | None = None, progress=None) -> TrialResult:
        """Train to `train.steps`; `progress(n)` (e.g. a tqdm bar's update) is told of each step."""
        reporter = reporter or NullReporter()
        cfg = self.cfg.train
        every = self.cfg.eval.every
        sum_d = sum_g = torch.zeros(())
        n_since, t_train, metrics = 0, 0.0, {}
        if self.device.type == "cuda" and cfg.cuda_graphs and self.graphed is None:
            self.graphed = GraphedStep(self)
        train_step = self.graphed or self._train_step
        finite = FinitenessCheck(self.device)  # NaN/inf propagate to the losses
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                loss_d, loss_g = train_step()
                bad = finite.check(self.step + 1, loss_d + loss_g)
                evaluate = (self.step + 1) % every == 0 or self.step + 1 == cfg.steps
                if evaluate and bad is None:
                    bad = finite.flush()  # in the clock: the GPU's time for the interval's last step
                t_train += time.perf_counter() - t0
                self.step += 1
                n_since += 1
                if progress is not None:
                    progress(1)
                if bad is not None:
                    losses = f"loss_d={loss_d.item()}, loss_g={loss_g.item()}"
                    raise Diverged(f"diverged at step {bad}: {losses}" if bad == self.step else
                                   f"diverged at step {bad} (stopped at step {self.step}: {losses})")
                sum_d, sum_g = sum_d + loss_d, sum_g + loss_g
                if evaluate:
                    t1 = time.perf_counter()
                    metrics, samples = self.evaluate()
                    if not all(math.isfinite(v) for v in metrics.values()):
                        raise Diverged(f"diverged at step {self.step}: non-finite metrics {metrics}")
                    metrics.update(
                        loss_d=(sum_d / n_since).item(),
                        loss_g=(sum_g / n_since).item(),
                        steps_per_sec=n_since / t_train,
                        eval_seconds=time.perf_counter() - t1,
                    )
                    metrics[OBJECTIVE] = objective(metrics, self.objectives)
                    if not self.best or metrics[OBJECTIVE] < self.best[OBJECTIVE]:
                        self.best = {"step": self.step, **metrics}
                    reporter.on_eval(EvalReport(self.step, metrics, samples), self)
                    sum_d = sum_g = torch.zeros(())
                    n_since, t_train = 0, 0.0
        except Diverged as err:
            result = TrialResult("diverged", self.step, metrics, self.best, str(err))
        else:
            result = TrialResult("finished", self.step, metrics, self.best)
        reporter.on_end(result, self)
        return result

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "best": self.best,
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {
                "train": self.rng.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.step, self.best = state["step"], dict(state["best"])
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for opt in (self.opt_g, self.opt_d):  # a graphed run saved capturable optimizers: eager until graphed
            set_capturable(opt, False)
        self.graphed = None  # a graph holds the optimizers' old state tensors: capture again
        rng = state["rng"]
        self.rng.set_state(rng["train"])
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    def save_checkpoint(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.cfg, self.state_dict(), self.evaluator.protocol)
