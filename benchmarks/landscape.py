"""Benchmark: 2-D loss landscape grid, deep-copy-per-point baseline vs ``loss_landscape`` (vmap).

Baseline (the official code's way): for each grid point deep-copy the model, add ``a d1 + b d2`` to
its weights in place, evaluate in eval mode. Ours: ``hdvit_lib.analysis.landscape.loss_landscape``
(stacked weights of ``chunk`` grid points in one vmapped ``functional_forward``, no copies), also
with the loop backend and with bf16 autocast (``amp=True``; pays on CPUs with AMX/AVX-512 bf16).
Same model, directions, grid and images; prints timings, the ratio and the largest difference.
Run: .venv/bin/python benchmarks/landscape.py [--points 7 --images 32 --chunk 16 --threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import deepcopy_landscape
from hessian import small_models

from hdvit_lib.analysis.landscape import loss_landscape, random_direction


def deepcopy_grid(model: nn.Module, batches, coords: np.ndarray, seed: int) -> np.ndarray:
    """The baseline grid (row i: b = coords[i], column j: a = coords[j]), one deep copy per point."""
    dirs = (random_direction(model, seed), random_direction(model, seed + 1))
    points = [(float(a), float(b)) for b in coords for a in coords]
    return np.asarray(deepcopy_landscape(model, dirs, points, batches)).reshape(len(coords), len(coords))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=7)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.images, 3, 32, 32, generator=g), torch.randint(0, 10, (args.images,), generator=g))]
    coords = np.linspace(-1.0, 1.0, args.points)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}")
    print(f"# {args.points}x{args.points} grid, {args.images} images, chunk={args.chunk}")
    print("| model | deep-copy s | ours (vmap) s | ours (loop) s | ours (loop, bf16) s | speed-up vmap | speed-up loop "
          "| speed-up loop bf16 | max abs. diff fp32 | max abs. diff bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, model in small_models().items():
        t0 = time.perf_counter()
        ref = deepcopy_grid(model, batches, coords, seed=0)
        t_base = time.perf_counter() - t0
        ours = loss_landscape(model, batches, n_points=args.points, chunk=args.chunk, backend="vmap", progress=False)
        loop = loss_landscape(model, batches, n_points=args.points, backend="loop", progress=False)
        bf16 = loss_landscape(model, batches, n_points=args.points, backend="loop", progress=False, amp=True)
        diff = np.abs(ours.nll - ref).max()
        print(f"| {name} | {t_base:.2f} | {ours.seconds:.2f} | {loop.seconds:.2f} | {bf16.seconds:.2f} | "
              f"{t_base / ours.seconds:.2f}x | {t_base / loop.seconds:.2f}x | {t_base / bf16.seconds:.2f}x | {diff:.1e} | "
              f"{np.abs(bf16.nll - ref).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
