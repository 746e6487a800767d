"""Benchmark on one GPU: our paper-scale code paths against the paper's way, in the same run.

Three measurements, each a ratio against a baseline timed in the same process on the same
random CIFAR-shaped data (generated on the device; nothing is downloaded):

(a) training throughput (images/s) of resnet50, vit_ti, alternet50: baseline fp32, batch 96, NCHW,
    eager, ``AdamW(foreach=False)`` (the per-tensor loop of the paper's torch 1.9) against ours:
    bf16 autocast, channels_last, ``AdamW(fused=True)`` at ``--batch`` (and ``torch.compile`` with
    ``--compile``).
(b) Hessian top-5 on one mini-batch of 16 (resnet50, vit_ti): baseline: sequential deflated power
    iteration with double backward (PyHessian, the paper's tool), written here; ours:
    ``hdvit_lib.analysis.hessian.top_eigenvalues(method="lanczos")`` and the batched ``spectrum``.
(c) loss-landscape grid points over ``--images`` images (resnet50, vit_ti): baseline: per grid
    point a deep copy of the model, its weights moved, a full pass over the images; ours:
    ``hdvit_lib.analysis.landscape.loss_landscape`` (stacked weights, no copy).
(d) the ``paper`` augmentation pipeline (``benchmarks/data_pipeline.py``): a per-sample
    DataLoader with ``--workers`` processes against ``DeviceLoader`` (augmentation on the GPU).
(e) our training step fed by each of the two pipelines (resnet50, vit_ti): does the data keep
    the GPU busy?

Runs are short; the paper-scale totals (Hessian: 312 mini-batches x top-5; landscape: 21 x 21
grid over 50,000 images; training: one 50,000-image epoch) are *extrapolated* linearly from the
measured rates and labelled so. Sized to finish in well under 8 minutes on an H100.

Run: ``python benchmarks/gpu.py --out benchmarks/gpu.json`` (GPU), or ``--quick`` for a tiny CPU
check that the script works (tiny models, a few steps; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from baselines import (  # benchmarks/ is the script's folder
    deepcopy_landscape,
    pyhessian_power,
)
from torch import nn

from hdvit_lib.models import get_model

PAPER_HESSIAN_BATCHES = 312  # 10% of CIFAR's 50k training images in mini-batches of 16
PAPER_GRID, PAPER_IMAGES = 21 * 21, 50_000
NUM_CLASSES = 100


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def build(name: str, cfg: argparse.Namespace) -> nn.Module:
    return get_model(name, num_classes=NUM_CLASSES, tiny=cfg.quick).to(cfg.device)


def row(**fields: Any) -> dict:
    """One result row: section, model, baseline, ours, ratio, unit, detail, extrapolated_*."""
    return fields


def random_batch(n: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, device=device, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), device=device, generator=g)
    return x, y


# ------------------------------------------------------------------------------------ (a) training
def train_rate(model: nn.Module, cfg: argparse.Namespace, batch: int, ours: bool, loader: Any = None) -> float:
    """Images per second over ``cfg.steps`` optimiser steps after ``cfg.warmup`` steps: on one
    fixed on-device batch, or (``loader``) on the batches a data pipeline delivers."""
    dev = cfg.device
    model.train()
    if ours:
        model = model.to(memory_format=torch.channels_last)
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
        step_model: Callable = torch.compile(model) if cfg.compile else model
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, foreach=False)
        step_model = model
    crit = nn.CrossEntropyLoss()
    fixed = random_batch(batch, dev, 0)

    def batches():
        while True:
            yield from (loader if loader is not None else [fixed])

    source = batches()
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if ours else contextlib.nullcontext()

    def step() -> None:
        x, y = next(source)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if ours:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp:
            loss = crit(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(cfg.warmup):
        step()
    secs, _ = timed(lambda: [step() for _ in range(cfg.steps)], dev)
    return batch * cfg.steps / secs


def bench_pipeline(cfg: argparse.Namespace) -> list[dict]:
    """Our training step (bf16, channels_last, fused AdamW, batch ``--batch``) fed by the ``paper``
    augmentation: per-sample DataLoader (``--workers``) vs ``DeviceLoader`` (group 8). Shows
    whether the data pipeline keeps the GPU busy (compare with section (a)'s fixed-batch rate)."""
    from data_pipeline import RandomU8Set
    from torch.utils.data import DataLoader

    from hdvit_lib.data.device_loader import DeviceLoader
    from hdvit_lib.data.loaders import TransformedDataset
    from hdvit_lib.data.transforms import MEAN_STD, build_transform

    ds = RandomU8Set(cfg.data_images)
    mean, std = MEAN_STD["cifar100"]
    rows = []
    for name in cfg.pipeline_models:
        per_sample = DataLoader(TransformedDataset(ds, build_transform("paper", mean, std, train=True)),
                                batch_size=cfg.batch, shuffle=True, drop_last=True, num_workers=cfg.workers,
                                pin_memory=cfg.device.type == "cuda", persistent_workers=cfg.workers > 0)
        on_device = DeviceLoader(ds, cfg.batch, "paper", mean, std, cfg.device, drop_last=True, group=8)
        base = train_rate(build(name, cfg), cfg, cfg.batch, ours=True, loader=per_sample)
        ours = train_rate(build(name, cfg), cfg, cfg.batch, ours=True, loader=on_device)
        rows.append(row(section="train+data img/s", model=name, baseline=base, ours=ours, ratio=ours / base,
                         unit="img/s", detail=f"our step fed by DataLoader ({cfg.workers} workers) vs DeviceLoader",
                         extrapolated_baseline_s=50_000 / base, extrapolated_ours_s=50_000 / ours,
                         extrapolated_what="one 50k-image epoch, s"))
        print(f"  train+data {name}: {base:.0f} -> {ours:.0f} img/s", flush=True)
    return rows


def bench_training(cfg: argparse.Namespace) -> list[dict]:
    rows = []
    for name in cfg.train_models:
        base = train_rate(build(name, cfg), cfg, cfg.base_batch, ours=False)
        ours = train_rate(build(name, cfg), cfg, cfg.batch, ours=True)
        rows.append(row(section="train img/s", model=name, baseline=base, ours=ours, ratio=ours / base,
                         unit="img/s", detail=f"fp32 b{cfg.base_batch} eager vs bf16+CL+fused b{cfg.batch}"
                         + (" +compile" if cfg.compile else ""),
                         extrapolated_baseline_s=50_000 / base, extrapolated_ours_s=50_000 / ours,
                         extrapolated_what="one 50k-image epoch, s"))
        print(f"  train {name}: {base:.0f} -> {ours:.0f} img/s", flush=True)
    return rows


# ------------------------------------------------------------------------------------ (b) Hessian
def bench_hessian(cfg: argparse.Namespace) -> list[dict]:
    try:
        from hdvit_lib.analysis.hessian import analysis_mode, spectrum, top_eigenvalues
    except ImportError as e:
        print(f"  (b) skipped: hdvit_lib.analysis.hessian not available ({e})")
        return []
    rows = []
    for name in cfg.hessian_models:
        model = build(name, cfg)
        batch = random_batch(cfg.hessian_batch, cfg.device, 1)
        with analysis_mode(model):  # eval, plain attention; first a warm-up (kernel selection)
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            torch.autograd.grad(loss, list(model.parameters()))
            t_base, (base_vals, base_hvp) = timed(
                lambda m=model, b=batch: pyhessian_power(m, *b, cfg.k, cfg.tol, cfg.max_iter), cfg.device)
        t_ours, (vals, info) = timed(lambda m=model, b=batch: top_eigenvalues(
            m, b, k=cfg.k, method="lanczos", tol=cfg.tol, max_iter=cfg.max_iter, return_info=True), cfg.device)
        batches = [random_batch(cfg.hessian_batch, cfg.device, 10 + i) for i in range(cfg.spectrum_batches)]
        t_spec, spec = timed(lambda m=model, b=batches: spectrum(
            m, b, n_batches=len(b), k=cfg.k, method="lanczos", tol=cfg.tol, max_iter=cfg.max_iter,
            stack=len(b), progress=False), cfg.device)
        per_batch_spec = t_spec / len(batches)
        top_diff = abs(float(vals[0]) - base_vals[0]) / (abs(base_vals[0]) + 1e-12)
        common = row(model=name, unit="s/batch", extrapolated_what=f"{PAPER_HESSIAN_BATCHES} batches x top-{cfg.k}, s",
                      extrapolated_baseline_s=t_base * PAPER_HESSIAN_BATCHES)
        rows.append(row(section=f"Hessian top-{cfg.k} (1 batch)", baseline=t_base, ours=t_ours, ratio=t_base / t_ours,
                         detail=f"power {base_hvp} HVPs vs Lanczos {info['n_hvp']} HVPs; "
                         f"top-1 rel. diff {top_diff:.1e}",
                         extrapolated_ours_s=t_ours * PAPER_HESSIAN_BATCHES, **common))
        rows.append(row(section=f"Hessian spectrum (stack {len(batches)})", baseline=t_base, ours=per_batch_spec,
                         ratio=t_base / per_batch_spec,
                         detail=f"{len(batches)} batches, backend {spec.backend}, HVPs {list(map(int, spec.n_hvp))}",
                         extrapolated_ours_s=per_batch_spec * PAPER_HESSIAN_BATCHES, **common))
        print(f"  hessian {name}: power {t_base:.2f}s, lanczos {t_ours:.2f}s, spectrum {per_batch_spec:.2f}s/batch",
              flush=True)
    return rows


# ------------------------------------------------------------------------------------ (c) landscape
def bench_landscape(cfg: argparse.Namespace) -> list[dict]:
    try:
        from hdvit_lib.analysis.landscape import loss_landscape, random_direction
    except ImportError as e:
        print(f"  (c) skipped: hdvit_lib.analysis.landscape not available ({e})")
        return []
    rows = []
    n_side = cfg.grid
    for name in cfg.landscape_models:
        model = build(name, cfg).eval()
        batches = [random_batch(cfg.eval_batch, cfg.device, 100 + i) for i in range(cfg.images // cfg.eval_batch)]
        n_img = sum(len(y) for _, y in batches)
        dirs = [random_direction(model, s) for s in (0, 1)]
        lin = torch.linspace(-1.0, 1.0, n_side).tolist()
        coords = [(a, b) for b in lin for a in lin]  # the order loss_landscape uses (a fastest)
        with torch.no_grad():
            model(batches[0][0])  # warm-up
        t_base, base_nll = timed(lambda m=model, d=dirs, c=coords, b=batches: deepcopy_landscape(m, tuple(d), c, b),
                               cfg.device)
        variants = [("landscape grid", False)] + ([("landscape grid bf16", True)] if cfg.device.type == "cuda" else [])
        for section, amp in variants:
            t_ours, land = timed(lambda m=model, b=batches, a=amp: loss_landscape(
                m, b, n_points=n_side, span=1.0, seed=0, chunk=cfg.chunk, progress=False, amp=a), cfg.device)
            diff = max(abs(float(u) - v) for u, v in zip(land.nll.ravel(), base_nll, strict=True))
            per = len(coords) * n_img
            rows.append(row(section=section, model=name, baseline=t_base / per * 1e6, ours=t_ours / per * 1e6,
                             ratio=t_base / t_ours, unit="us/(point*image)",
                             detail=f"{len(coords)} points x {n_img} images, backend {land.backend}"
                             f"{', bf16 autocast' if amp else ''}, max |NLL diff| {diff:.1e}",
                             extrapolated_baseline_s=t_base / per * PAPER_GRID * PAPER_IMAGES,
                             extrapolated_ours_s=t_ours / per * PAPER_GRID * PAPER_IMAGES,
                             extrapolated_what="21x21 grid x 50k images, s"))
            print(f"  {section} {name}: {t_base:.2f}s vs {t_ours:.2f}s ({land.backend}), max NLL diff {diff:.1e}",
                  flush=True)
    return rows


# ------------------------------------------------------------------------------------ (d) data
def bench_data(cfg: argparse.Namespace) -> list[dict]:
    """The ``paper`` augmentation: per-sample DataLoader (``--workers`` processes, 2 as on a
    Colab VM) vs ``DeviceLoader`` (RandAugment per group of 8) on the device."""
    from data_pipeline import pipeline_rates

    r = pipeline_rates(cfg.data_images, cfg.batch, cfg.device, cfg.workers, group=8, passes=1 if cfg.quick else 2)
    print(f"  data: {r['baseline']:.0f} -> {r['ours']:.0f} img/s (group 1: {r['ours_group1']:.0f})", flush=True)
    return [row(section="data img/s", model="paper augment", baseline=r["baseline"], ours=r["ours"],
                ratio=r["ours"] / r["baseline"], unit="img/s",
                detail=f"DataLoader {cfg.workers} workers per-sample vs DeviceLoader group 8 "
                       f"(group 1: {r['ours_group1']:.0f} img/s), batch {cfg.batch}",
                extrapolated_baseline_s=50_000 / r["baseline"], extrapolated_ours_s=50_000 / r["ours"],
                extrapolated_what="one 50k-image epoch of augmentation, s")]


# ------------------------------------------------------------------------------------ report
def markdown(rows: list[dict], device_name: str) -> str:
    lines = [f"Device: {device_name}, torch {torch.__version__}", "",
             "| measurement | model | baseline | ours | unit | speed-up | details "
             + "| EXTRAPOLATED paper-scale baseline / ours |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ext = (f"{r['extrapolated_baseline_s']:.0f} s / {r['extrapolated_ours_s']:.0f} s "
               f"({r['extrapolated_what']})")
        lines.append(f"| {r['section']} | {r['model']} | {r['baseline']:.4g} | {r['ours']:.4g} | {r['unit']} | "
                     f"{r['ratio']:.2f}x | {r['detail']} | {ext} |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models on the CPU: checks that the script runs")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--sections", default="train,hessian,landscape,data,pipeline")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the data baseline")
    p.add_argument("--compile", action="store_true", help="also torch.compile our training step")
    p.add_argument("--batch", type=int, default=256, help="our training batch (baseline: 96)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--images", type=int, default=None, help="images per landscape grid point")
    p.add_argument("--grid", type=int, default=3, help="measured grid side (3 -> 9 points)")
    cfg = p.parse_args(argv)
    cfg.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    q = cfg.quick
    cfg.base_batch = 8 if q else 96
    cfg.batch = 16 if q else cfg.batch
    cfg.warmup = 1 if q else 3
    cfg.steps = cfg.steps or (2 if q else 15)
    cfg.train_models = ["resnet50", "vit_ti", "alternet50"]
    cfg.pipeline_models = ["resnet50", "vit_ti"]
    cfg.hessian_models = ["resnet50", "vit_ti"]
    cfg.landscape_models = ["resnet50", "vit_ti"]
    cfg.hessian_batch = 4 if q else 16
    cfg.k = 2 if q else 5
    cfg.tol = 1e-3
    cfg.max_iter = 6 if q else 100
    cfg.spectrum_batches = 2 if q else 4
    cfg.eval_batch = 16 if q else 512
    cfg.images = cfg.images or (32 if q else 4096)
    cfg.grid = 2 if q else cfg.grid
    cfg.chunk = 9
    cfg.data_images = 512 if q else 20_000
    cfg.workers = 0 if q else cfg.workers
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = parse(argv)
    if cfg.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for both sides
        torch.backends.cudnn.allow_tf32 = False
        device_name = torch.cuda.get_device_name(cfg.device)
    else:
        torch.set_num_threads(1 if cfg.quick else torch.get_num_threads())
        device_name = f"CPU ({platform.processor() or platform.machine()})"
    torch.manual_seed(0)
    print(f"benchmarks/gpu.py on {device_name}{' (--quick: numbers mean nothing)' if cfg.quick else ''}", flush=True)
    sections = {"train": bench_training, "hessian": bench_hessian, "landscape": bench_landscape, "data": bench_data,
                "pipeline": bench_pipeline}
    rows: list[dict] = []
    t0 = time.perf_counter()
    for s in cfg.sections.split(","):
        if s not in sections:
            raise SystemExit(f"unknown section {s!r}; choose from {list(sections)}")
        print(f"({s})", flush=True)
        try:
            rows += sections[s](cfg)
        except Exception:  # noqa: BLE001 -- report the other sections anyway: one lent-GPU run must give numbers
            traceback.print_exc()
            print(f"  ({s}) FAILED; continuing", flush=True)
        if cfg.device.type == "cuda":
            torch.cuda.empty_cache()
    table = markdown(rows, device_name)
    print(table)
    print(f"total {time.perf_counter() - t0:.0f} s. Columns 'EXTRAPOLATED' are linear extrapolations of the "
          "measured rates to the paper's sizes, not measurements.")
    result = row(device=device_name, torch=torch.__version__, quick=cfg.quick, compile=cfg.compile,
                  seconds=time.perf_counter() - t0, rows=rows, markdown=table)
    if cfg.out:
        with open(cfg.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
