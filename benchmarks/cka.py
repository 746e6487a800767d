"""Benchmark: one-pass minibatch CKA (all block pairs from one Gram matrix per block and batch)
against a naive baseline that recomputes the Gram matrices and HSICs for every pair.

Both run in the same process on the same synthetic features; the script prints the timings, the
ratio and the largest difference between the two matrices.
Run: .venv/bin/python benchmarks/cka.py [--blocks 14 --images 256 --batch 64 --dim 2048]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from hdvit_lib.analysis.cka import cka_matrix, hsic_unbiased
from hdvit_lib.analysis.features import Features


def naive_cka(outputs: list[torch.Tensor], batch: int) -> np.ndarray:
    """Per pair (i <= j) and per minibatch: both Gram matrices and three unbiased HSICs."""
    n_blocks, n = len(outputs), outputs[0].shape[0]
    m = np.eye(n_blocks)
    for i in range(n_blocks):
        for j in range(i + 1, n_blocks):
            kl = kk = ll = 0.0
            for s in range(0, n, batch):
                x = outputs[i][s : s + batch].flatten(1).double()
                y = outputs[j][s : s + batch].flatten(1).double()
                k, ell = x @ x.T, y @ y.T
                kl += hsic_unbiased(k, ell)
                kk += hsic_unbiased(k, k)
                ll += hsic_unbiased(ell, ell)
            m[i, j] = m[j, i] = kl / np.sqrt(kk * ll)
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--blocks", type=int, default=14)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dim", type=int, default=2048, help="features per block (C*H*W)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(a.images, a.dim, generator=g)
    outs = [base + 0.5 * i * torch.randn(a.images, a.dim, generator=g) for i in range(a.blocks)]
    feats = Features(names=[f"b{i}" for i in range(a.blocks)], kinds=["conv"] * a.blocks, stages=[0] * a.blocks,
                     outputs=outs, inputs=torch.zeros(a.images, 3, 2, 2), targets=None)

    t0 = time.perf_counter()
    ours = cka_matrix(feats, batch_size=a.batch).matrix
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = naive_cka(outs, a.batch)
    t_naive = time.perf_counter() - t0

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {a.threads}")
    print(f"{a.blocks} blocks, {a.images} images, minibatch {a.batch}, {a.dim} features per block")
    print(f"one-pass CKA matrix: {t_ours * 1e3:.1f} ms")
    print(f"naive per-pair     : {t_naive * 1e3:.1f} ms")
    print(f"speed-up           : {t_naive / t_ours:.1f}x   max |difference| = {np.abs(ours - ref).max():.2e}")


if __name__ == "__main__":
    main()
