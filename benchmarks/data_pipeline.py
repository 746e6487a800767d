"""Benchmark: the ``paper`` augmentation pipeline, per-sample DataLoader vs ``DeviceLoader``.

Baseline (the usual way, and the official code's): a DataLoader whose workers run crop, flip and
RandAugment image by image (``hdvit_lib.data.transforms``), batches copied to the device. Ours:
``hdvit_lib.data.device_loader.DeviceLoader``: the set on the device as uint8, crop/flip as one
gather per batch, RandAugment per group of ``--group`` images. Both produce normalised float
batches on the device; the rate is images per second over whole passes of a random uint8
CIFAR-shaped set (nothing downloaded). The trainer's own mixup/cutmix is the same on both sides
and left out.

Run: .venv/bin/python benchmarks/data_pipeline.py [--images 4096 --batch 256 --workers 0 --device cpu]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hdvit_lib.data.device_loader import DeviceLoader
from hdvit_lib.data.loaders import TransformedDataset
from hdvit_lib.data.transforms import MEAN_STD, build_transform


class RandomU8Set:
    """``n`` random CIFAR-shaped images stored as uint8 (items: float in [0, 1], label)."""

    def __init__(self, n: int, classes: int = 100, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        self.targets = torch.randint(0, classes, (n,), generator=g).tolist()
        self.num_classes = classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i].float().div_(255), self.targets[i]


def _rate(loader, device: torch.device, passes: int) -> float:
    def one_pass() -> int:
        n = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            n += y.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return n

    one_pass()  # warm-up (workers start, caches fill)
    t0 = time.perf_counter()
    n = sum(one_pass() for _ in range(passes))
    return n / (time.perf_counter() - t0)


def pipeline_rates(n: int, batch: int, device: torch.device, workers: int, group: int, passes: int = 2) -> dict:
    """Images/s of the per-sample DataLoader (``workers`` processes) and of ``DeviceLoader`` (group
    ``group``, and group 1 = per-sample draws) on ``device``, on the same ``n`` images."""
    ds = RandomU8Set(n)
    mean, std = MEAN_STD["cifar100"]
    base = DataLoader(TransformedDataset(ds, build_transform("paper", mean, std, train=True)), batch_size=batch,
                      shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, drop_last=True)
    ours = DeviceLoader(ds, batch, "paper", mean, std, device, drop_last=True, group=group)
    ours1 = DeviceLoader(ds, batch, "paper", mean, std, device, drop_last=True, group=1)
    return {"baseline": _rate(base, device, passes), "ours": _rate(ours, device, passes),
            "ours_group1": _rate(ours1, device, passes)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    r = pipeline_rates(args.images, args.batch, dev, args.workers, args.group)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}, "
          f"device {dev}, {args.images} images, batch {args.batch}, DataLoader workers {args.workers}")
    print("| per-sample DataLoader img/s | DeviceLoader group 1 img/s | DeviceLoader group "
          f"{args.group} img/s | speed-up (group {args.group}) |")
    print("|---|---|---|---|")
    print(f"| {r['baseline']:.0f} | {r['ours_group1']:.0f} | {r['ours']:.0f} | {r['ours'] / r['baseline']:.2f}x |")


if __name__ == "__main__":
    main()
