"""CUDA graphs for the training step (ganpipe.train.graphs), checked and timed on a GPU in one short run:

  matrix  every case trained --steps steps on the GPU twice from the same seed, eagerly and graphed, with
          an evaluation at the end: both finish, the graph was captured (no fallback), both drew the same
          random numbers (the trainers' generators end in the same state), and how far the weights and the
          metrics differ. The graphed trainer is then saved, reloaded on the CPU (same generator output;
          a few CPU steps) and resumed graphed on the GPU.
  speed   steps/s eager against graphed, side by side: two trainers of the same config and seed,
          interleaved, medians of --repeats runs of --speed-steps steps, each step with a finiteness
          check that waits for it ("sync", the loop until session 7) or reads it a step later
          ("lagged", the loop now); graphed also without any check
  divergence  a D weight poisoned with NaN mid-run: eager and graphed runs stop as diverged, naming the step
  cli     `ganpipe trial` as a user runs it, stability.yaml's MLP corner, eager and graphed: the
          steps/s its own log reports
Needs torch with CUDA, PyYAML, tqdm, scikit-learn, threadpoolctl; not Ray, Optuna or MLflow.

    python benchmarks/gpu_graphs.py --out gpu-graphs.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_cost import STABILITY_MLP_CORNER as MLP_CORNER  # noqa: E402 (this script's folder)
from gpu_check import run_parts  # noqa: E402
from ganpipe.metrics import fixed_latents  # noqa: E402
from ganpipe.train.divergence import FinitenessCheck  # noqa: E402
from ganpipe.train.graphs import GraphedStep  # noqa: E402
from ganpipe.train import make_trainer, trainer_from_checkpoint  # noqa: E402
from ganpipe.trial import prepare_trial  # noqa: E402

SWEEPS = ROOT / "sweeps"
GPU = ["resources.gpu=0.25", "search.scheduler.name=none"]  # resources.gpu > 0: trial trains on CUDA
EAGER, GRAPHED = ["train.cuda_graphs=false"], ["train.cuda_graphs=true"]
DEVICE = "cuda"  # --device cpu: a smoke run of matrix and cli without a GPU (nothing is graphed there)


def config(sweep: str, sets: list[str]):
    return prepare_trial(str(SWEEPS / sweep), GPU + sets)[1]


def max_abs_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Over the parameters (BatchNorm's running variances and spectral norm's vectors left out)."""
    with torch.no_grad():
        return max(float((x - y).abs().max()) for x, y in zip(a.parameters(), b.parameters()))


def one_case(sweep: str, sets: list[str], steps: int, folder: Path) -> dict:
    sets = sets + [f"train.steps={steps}", f"eval.every={steps}"]
    eager, graphed = make_trainer(config(sweep, sets + EAGER), DEVICE), make_trainer(config(sweep, sets + GRAPHED), DEVICE)
    r_eager, r_graphed = eager.train(), graphed.train()
    out = {"eager": r_eager.status, "graphed": r_graphed.status,
           "captured": graphed.graphed is not None and graphed.graphed.graph is not None,
           "fallback": graphed.graphed.failed if graphed.graphed else "no GraphedStep",
           "same_draws": torch.equal(eager.rng.get_state(), graphed.rng.get_state()),
           "generator_max_abs_diff": max_abs_diff(eager.generator, graphed.generator),
           "d_max_abs_diff": max_abs_diff(eager.d, graphed.d),
           "metrics_eager": r_eager.metrics, "metrics_graphed": r_graphed.metrics}
    path = graphed.save_checkpoint(folder / "ck.pt")
    on_cpu = trainer_from_checkpoint(path, device="cpu", steps=steps + 5)
    if hasattr(graphed, "translate"):
        x = graphed.evaluator.source[:8]
        a, b = graphed.translate(x), on_cpu.translate(x)
    else:
        z = fixed_latents(8, graphed.cfg.model.latent_dim)
        labels = torch.arange(8) % graphed.n_classes if graphed.n_classes else None
        a, b = graphed.generate(z, labels), on_cpu.generate(z, labels)
    out["cpu_reload_max_abs_diff"] = float((a - b).abs().max())
    on_cpu.cfg.eval.every = 10**9  # a few CPU steps from the graphed run's optimizer state, no evaluation
    out["cpu_continues"] = on_cpu.train().status
    resumed = trainer_from_checkpoint(path, device=DEVICE, steps=steps + 20)
    out["resumed"] = resumed.train().status
    out["resumed_captured"] = resumed.graphed is not None and resumed.graphed.graph is not None
    return out


def divergence(poison_at: int = 10) -> dict:
    """A D weight set to NaN after step `poison_at` (the graph reads it in place): eager and graphed
    trainers must both stop as diverged and name step poison_at + 1, the graphed one (its check reads
    each step's losses a step later on a GPU) a step later."""
    out = {}
    for label, sets in (("eager", EAGER), ("graphed", GRAPHED)):
        trainer = make_trainer(config("quick.yaml", sets + ["train.steps=40", "eval.every=40"]), DEVICE)
        weight = next(trainer.d.parameters())

        def poison(_n, trainer=trainer, weight=weight):
            if trainer.step == poison_at:
                with torch.no_grad():
                    weight.fill_(float("nan"))

        result = trainer.train(progress=poison)
        out[label] = {"status": result.status, "step": result.step, "message": result.message,
                      "captured": trainer.graphed is not None and trainer.graphed.graph is not None}
    print("divergence", json.dumps(out), flush=True)
    return out


def matrix(steps: int, only: list[str] | None) -> dict:
    cases = {f"stability {arch} {loss}": ("stability.yaml", [f"model.architecture={arch}", f"loss.name={loss}"])
             for arch in ("dcgan", "resnet", "mlp") for loss in ("hinge", "ns", "wgan-gp", "lsgan", "bce")}
    cases["stability rmsprop r1 n_disc 2 no-ema clip"] = ("stability.yaml", [
        "optimizer.name=rmsprop", "loss.name=ns", "loss.r1_weight=1.0", "train.n_disc=2", "model.ema_decay=0.0",
        "train.grad_clip=10.0"])
    cases["digits first values"] = ("digits.yaml", [])
    cases["digits conditional resnet"] = ("digits.yaml", ["model.architecture=resnet", "model.conditional=true"])
    cases["digits conditional dcgan"] = ("digits.yaml", ["model.architecture=dcgan", "model.conditional=true"])
    cases["quick ring8 first values"] = ("quick.yaml", [])
    cases["translation cyclegan"] = ("translation.yaml", [])
    out = {}
    for name, (sweep, sets) in cases.items():
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                out[name] = one_case(sweep, sets, steps, Path(tmp))
            except Exception as e:  # one broken case must not hide the others
                out[name] = {"status": "exception", "error": "".join(traceback.format_exception_only(e)).strip(),
                             "traceback": traceback.format_exc()}
        brief = {k: v for k, v in out[name].items() if k not in ("traceback", "metrics_eager", "metrics_graphed")}
        print("matrix", name, json.dumps(brief), flush=True)
    return out


def rate(step, n: int, check: str = "sync") -> float:
    """Steps/s of `step` with the finiteness check: "sync" waits for each step's losses (the loop until
    session 7), "lagged" reads them a step later (FinitenessCheck, the loop now), "none" skips it."""
    finite = FinitenessCheck(torch.device("cuda"))
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(n):
        loss_d, loss_g = step()
        if check == "sync" and not torch.isfinite(loss_d + loss_g):
            raise RuntimeError("diverged")
        if check == "lagged" and finite.check(i, loss_d + loss_g) is not None:
            raise RuntimeError("diverged")
    if finite.flush() is not None:
        raise RuntimeError("diverged")
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def speed(steps: int, repeats: int) -> dict:
    cases = {"stability MLP corner": ("stability.yaml", MLP_CORNER),
             "stability first values": ("stability.yaml", []),
             "digits first values": ("digits.yaml", []),
             "quick ring8 first values": ("quick.yaml", []),
             "translation cyclegan": ("translation.yaml", [])}
    out = {}
    for name, (sweep, sets) in cases.items():
        eager = make_trainer(config(sweep, sets + EAGER), "cuda")
        graphed = make_trainer(config(sweep, sets + GRAPHED), "cuda")
        step = GraphedStep(graphed)
        rate(eager._train_step, 10)
        rate(step, 10)  # warm-up, capture
        runs: dict[str, list] = {"eager": [], "eager_lagged": [], "graphed": [], "graphed_lagged": [],
                                 "graphed_no_check": []}
        for _ in range(repeats):
            runs["eager"].append(rate(eager._train_step, steps))
            runs["eager_lagged"].append(rate(eager._train_step, steps, check="lagged"))
            runs["graphed"].append(rate(step, steps))
            runs["graphed_lagged"].append(rate(step, steps, check="lagged"))
            runs["graphed_no_check"].append(rate(step, steps, check="none"))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[name] = {"median": med, "runs": runs, "graphed_over_eager": med["graphed"] / med["eager"],
                     "lagged_graphed_over_eager": med["graphed_lagged"] / med["eager"],
                     "captured": step.graph is not None, "fallback": step.failed}
        print("speed", name, json.dumps({k: round(v, 1) for k, v in med.items()}),
              f"graphed/eager {out[name]['graphed_over_eager']:.2f}",
              f"lagged graphed/eager {out[name]['lagged_graphed_over_eager']:.2f}", flush=True)
    return out


def cli(steps: int) -> dict:
    out = {}
    for label, flag in (("eager", "false"), ("graphed", "true")):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-c", "import sys; from ganpipe.cli import main; sys.exit(main())", "trial", str(SWEEPS / "stability.yaml"), "--out", tmp,
                   *[a for s in GPU + MLP_CORNER + [f"train.steps={steps}", f"eval.every={steps // 2}",
                                                     f"train.cuda_graphs={flag}"] for a in ("--set", s)]]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall = time.perf_counter() - start
            lines = Path(tmp, "metrics.jsonl").read_text().splitlines() if Path(tmp, "metrics.jsonl").exists() else []
            out[label] = {"rc": proc.returncode, "wall_s": wall,
                          "steps_per_sec_logged": [json.loads(line)["steps_per_sec"] for line in lines],
                          "fid_logged": [json.loads(line)["fid"] for line in lines],
                          "tail": (proc.stdout + proc.stderr)[-1500:]}
        print("cli", label, json.dumps({k: v for k, v in out[label].items() if k != "tail"})[:1500], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu-graphs.json")
    parser.add_argument("--steps", type=int, default=40, help="matrix: steps per case")
    parser.add_argument("--speed-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli-steps", type=int, default=2000)
    parser.add_argument("--parts", nargs="+", default=["speed", "divergence", "matrix", "cli"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", nargs="+", help="matrix: only the cases whose names contain one of these")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_graphs: no CUDA device")
    results = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE, "torch": torch.__version__, "cpus": os.cpu_count()}
    print(json.dumps(results), flush=True)
    parts = {"matrix": lambda: matrix(args.steps, args.cases), "divergence": divergence, "speed": lambda: speed(args.speed_steps, args.repeats),
             "cli": lambda: cli(args.cli_steps)}
    run_parts(parts, args.parts, results, Path(args.out))


if __name__ == "__main__":
    main()
