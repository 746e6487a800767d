"""Benchmark: top-k Hessian eigenvalues per mini-batch, PyHessian-style baseline vs ``spectrum``.

Baseline: deflated power iteration with double backward on the model's own parameters (a list of
tensors, gradient graph built once per mini-batch, as PyHessian does), one mini-batch at a time.
Ours: ``hdvit_lib.analysis.hessian.spectrum(method="lanczos", stack=...)`` (Lanczos with full
re-orthogonalisation in torch; mini-batches stacked when vmap pays, i.e. on a GPU).
Same models, same mini-batches, same tol; prints time, #HVPs and the eigenvalue agreement.
Run: .venv/bin/python benchmarks/hessian.py [--batches 2 --batch-size 16 --k 5 --threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from baselines import pyhessian_power  # benchmarks/ is the script's folder
from torch import nn

from hdvit_lib.analysis.hessian import analysis_mode, spectrum


class _ViT(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 4, patch: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, 0.0, "gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1) + self.pos_embed
        return self.head(self.encoder(t)[:, 0])


class _Res(nn.Module):
    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()

        def unit(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

        w = width
        self.body = nn.Sequential(unit(3, w, 1), unit(w, w, 1), unit(w, 2 * w, 2), unit(2 * w, 4 * w, 2))
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def small_models() -> dict[str, nn.Module]:
    """Small ViT-like and ResNet-like models (the zoo's when importable, else stand-ins): ``{"vit_ti_tiny": ..., "resnet18_tiny": ...}``, random init with seed 0."""
    torch.manual_seed(0)
    try:
        from hdvit_lib.models import get_model

        return {n: get_model(n, num_classes=10) for n in ("vit_ti_tiny", "resnet18_tiny")}
    except ImportError:
        return {"vit_like": _ViT(), "resnet_like": _Res()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--stack", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch_size, 3, 32, 32, generator=g), torch.randint(0, 10, (args.batch_size,), generator=g))
        for _ in range(args.batches)
    ]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}")
    print(f"# {args.batches} mini-batches of {args.batch_size}, top-{args.k}, tol={args.tol}")
    print("| model | baseline s | baseline HVPs | ours s | ours HVPs | speed-up | max rel. diff (top-1) | max rel. diff (top-k) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model in small_models().items():
        t0 = time.perf_counter()
        base, base_hvp = [], 0
        with analysis_mode(model):  # eval mode, no fused attention: the baseline needs it too
            for i, (x, y) in enumerate(batches):
                vals, n = pyhessian_power(model, x, y, args.k, args.tol, args.max_iter, seed=i)
                base.append(vals)
                base_hvp += n
        t_base = time.perf_counter() - t0
        spec = spectrum(model, batches, args.batches, k=args.k, tol=args.tol, max_iter=args.max_iter,
                        stack=args.stack, progress=False)
        base = np.asarray(base)
        rel = np.abs(spec.eigenvalues - base) / np.abs(base)
        print(f"| {name} | {t_base:.1f} | {base_hvp} | {spec.seconds:.1f} | {int(spec.n_hvp.sum())} | "
              f"{t_base / spec.seconds:.2f}x | {rel[:, 0].max():.2e} | {rel.max():.2e} |", flush=True)
        print(f"#   baseline {np.round(base, 3).tolist()}\n#   ours     {np.round(spec.eigenvalues, 3).tolist()}"
              f" (backend {spec.backend})")


if __name__ == "__main__":
    main()
