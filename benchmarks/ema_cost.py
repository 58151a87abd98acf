"""Cost of one EMA update, torch's plain EMA (get_ema_multi_avg_fn) against ganpipe's warmed-up one, side by
side on the generators of the overhead benchmark, one thread; medians of interleaved repeats (each the best
of 3 x `--number` updates), in microseconds.

    python benchmarks/ema_cost.py [--repeats 5] [--number 1000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import timeit

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ganpipe.config.schema import ModelConfig
from ganpipe.nets import build_networks
from ganpipe.train.ema import make_ema

CASES = {"ring8 MLP 128-256": (ModelConfig("mlp", 16, 128), (2,)),
         "digits DCGAN width 32": (ModelConfig("dcgan", 32, 32), (1, 8, 8))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    for case, (model, shape) in CASES.items():
        g, _ = build_networks(model, shape)
        emas = {"torch plain": AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True),
                "ganpipe warm-up": make_ema(g, 0.999)}
        for ema in emas.values():
            ema.update_parameters(g)  # the first update only copies
        times: dict[str, list[float]] = {k: [] for k in emas}
        for _ in range(args.repeats):
            for k, ema in emas.items():
                best = min(timeit.repeat(lambda: ema.update_parameters(g), number=args.number, repeat=3))
                times[k].append(best / args.number * 1e6)
        out[case] = {k: {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v)} for k, v in times.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
