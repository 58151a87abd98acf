"""What only a GPU can show, in one short run (the device machines are lent for minutes):

  evaluator   the same samples judged by an Evaluator on the CPU and on the GPU: every metric's
              difference (TF32 off, so float32 round-off only) and the seconds per evaluation
  matrix      every architecture x loss of stability.yaml trained a few steps on the GPU with
              evaluation, saved, reloaded on the CPU (same generator output) and resumed on the GPU;
              digits.yaml conditional and translation.yaml (CycleGAN) likewise
  eval_share  a trial's share of time in evaluation on the GPU, evaluation on the GPU (now) against
              the CPU (before), side by side on the same trainer: stability.yaml's first values and
              its MLP corner at eval.every 2000
Needs torch with CUDA, PyYAML, tqdm, scikit-learn, threadpoolctl; not Ray, Optuna or MLflow.

    python benchmarks/gpu_check.py --out gpu-check.json
    python benchmarks/gpu_check.py --device cpu --matrix-steps 4 --every 20 --repeats 1   # a smoke run without a GPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_cost import STABILITY_MLP_CORNER as MLP_CORNER  # noqa: E402 (this script's folder)
from ganpipe.metrics import Evaluator, fixed_latents  # noqa: E402
from ganpipe.train import make_trainer, trainer_from_checkpoint  # noqa: E402
from ganpipe.trial import prepare_trial  # noqa: E402

SWEEPS = ROOT / "sweeps"
GPU = ["resources.gpu=0.25", "search.scheduler.name=none"]
DEVICE = "cuda"  # --device


def timed(fn, repeats: int) -> tuple[object, float]:
    """(last result, median seconds) of `repeats` calls, the GPU synchronised around each."""
    times = []
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def config(sweep: str, sets: list[str]):
    return prepare_trial(str(SWEEPS / sweep), GPU + sets)[1]


def evaluator_cpu_vs_gpu(repeats: int) -> dict:
    """Real-looking samples (the dataset itself under another seed, plus noise) judged on both devices."""
    out = {}
    for name in ("ring8", "digits", "stacked-digits"):
        cpu, gpu = Evaluator(name), Evaluator(name, device=DEVICE)
        real = cpu.dataset.sample(cpu.num_samples, torch.Generator().manual_seed(12345))
        fake = (real + 0.05 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).float()
        m_cpu, s_cpu = timed(lambda: cpu.evaluate(fake), repeats)
        gpu.evaluate(fake)  # warm-up: cuDNN picks its kernels
        m_gpu, s_gpu = timed(lambda: gpu.evaluate(fake), repeats)
        diff = {k: abs(m_cpu[k] - m_gpu[k]) for k in m_cpu}
        out[name] = {"cpu": m_cpu, "gpu": m_gpu, "abs_diff": diff, "cpu_s": s_cpu, "gpu_s": s_gpu}
        print("evaluator", name, f"cpu {s_cpu:.3f} s gpu {s_gpu:.3f} s", "max |diff|",
              max(diff.items(), key=lambda kv: kv[1]), flush=True)
    return out


def one_trainer(cfg, folder: Path) -> dict:
    """Train on the GPU with an evaluation, save, reload on the CPU, resume on the GPU."""
    trainer = make_trainer(cfg, DEVICE)
    result = trainer.train()
    path = trainer.save_checkpoint(folder / "ck.pt")
    z = fixed_latents(8, cfg.model.latent_dim)
    labels = torch.arange(8) % trainer.n_classes if trainer.n_classes else None
    on_cpu = trainer_from_checkpoint(path, device="cpu")
    if hasattr(trainer, "translate"):  # CycleGAN: compare G_AB on a few source images
        x = trainer.evaluator.source[:8]
        a, b = trainer.translate(x), on_cpu.translate(x)
    else:
        a, b = trainer.generate(z, labels), on_cpu.generate(z, labels)
    resumed = trainer_from_checkpoint(path, device=DEVICE, steps=cfg.train.steps + cfg.eval.every)
    again = resumed.train()
    finite = all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    return {"status": result.status, "metrics_finite": finite, "fid": result.metrics.get("fid"),
            "cpu_reload_max_abs_diff": float((a - b).abs().max()), "resumed": again.status, "resumed_step": again.step,
            "message": result.message}


def matrix(steps: int) -> dict:
    out = {}
    cases = {f"stability {arch} {loss}": ("stability.yaml", [f"model.architecture={arch}", f"loss.name={loss}"])
             for arch in ("dcgan", "resnet", "mlp") for loss in ("hinge", "ns", "wgan-gp", "lsgan", "bce")}
    cases["stability rmsprop r1 n_disc 2 no-ema"] = ("stability.yaml", [
        "optimizer.name=rmsprop", "loss.name=ns", "loss.r1_weight=1.0", "train.n_disc=2", "model.ema_decay=0.0"])
    cases["digits conditional resnet"] = ("digits.yaml", ["model.architecture=resnet", "model.conditional=true"])
    cases["translation cyclegan"] = ("translation.yaml", [])
    for name, (sweep, sets) in cases.items():
        sets = sets + [f"train.steps={steps}", f"eval.every={steps}"]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                out[name] = one_trainer(config(sweep, sets), Path(tmp))
            except Exception as e:  # one broken case must not hide the others
                out[name] = {"status": "exception", "error": "".join(traceback.format_exception_only(e)).strip(),
                             "traceback": traceback.format_exc()}
        print("matrix", name, json.dumps({k: v for k, v in out[name].items() if k != "traceback"}), flush=True)
    return out


def eval_share(every: int, repeats: int) -> dict:
    """One trainer on the GPU: `every` steps of training, then the evaluation on the GPU and on the CPU."""
    out = {}
    for name, sets in {"stability first values": [], "stability MLP corner": MLP_CORNER}.items():
        cfg = config("stability.yaml", sets + [f"eval.every={every}", f"train.steps={every}"])
        trainer = make_trainer(cfg, DEVICE)
        on_cpu = Evaluator(trainer.dataset, cfg.eval.num_samples)  # where evaluation ran before
        z = fixed_latents(trainer.evaluator.num_samples, cfg.model.latent_dim)
        speeds = []
        for _ in range(repeats + 1):  # the first interval warms up
            trainer.step = 0
            speeds.append(trainer.train().metrics["steps_per_sec"])  # the loop's own clock: training only
        train_s = every / statistics.median(speeds[1:])
        _, gpu_s = timed(lambda: trainer.evaluator.evaluate(trainer.generate(z)), repeats)
        _, cpu_s = timed(lambda: on_cpu.evaluate(trainer.generate(z)), repeats)
        out[name] = {"every": every, "train_s": train_s, "steps_per_sec": every / train_s,
                     "eval_gpu_s": gpu_s, "eval_cpu_s": cpu_s,
                     "share_gpu": gpu_s / (gpu_s + train_s), "share_cpu": cpu_s / (cpu_s + train_s)}
        print("eval_share", name, json.dumps(out[name]), flush=True)
    return out


def run_parts(parts: dict, names: list[str], results: dict, out: Path) -> None:
    """Run the named parts in order into `results`, timed; one that fails keeps its traceback and the rest
    still run. The file is written after each part: a run cut off at the device's limit keeps some."""
    for part in names:
        start = time.perf_counter()
        try:
            results[part] = parts[part]()
        except Exception:
            results[part] = {"exception": traceback.format_exc()}
            print(results[part]["exception"], flush=True)
        results[part + "_seconds"] = time.perf_counter() - start
        out.write_text(json.dumps(results, indent=2, default=str))
    print("wrote", out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu-check.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matrix-steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=2000, help="eval_share: steps per evaluation interval")
    parser.add_argument("--parts", nargs="+", default=["evaluator", "matrix", "eval_share"])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE
    results = {"device": name, "torch": torch.__version__, "cpus": torch.get_num_threads()}
    print(json.dumps(results), flush=True)
    parts = {"evaluator": lambda: evaluator_cpu_vs_gpu(args.repeats), "matrix": lambda: matrix(args.matrix_steps),
             "eval_share": lambda: eval_share(args.every, args.repeats)}
    run_parts(parts, args.parts, results, Path(args.out))


if __name__ == "__main__":
    main()
